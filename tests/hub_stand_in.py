"""A local stand-in for the Hugging Face Hub, as a pytest plugin providing the ``hub`` fixture.

The server speaks enough of the Hub's HTTP API for the real ``huggingface_hub`` client, ``datasets``'
``push_to_hub`` and the ``Trainer``'s ``push_to_hub`` to create repos, upload files (regular and LFS, single and
multi-part), commit, list and download them back. Nothing here reaches the network.

Usage in a test::

    def test_push(hub, tmp_path):
        HfApi().create_repo("me/thing", repo_type="dataset")          # HF_ENDPOINT and the token are already set
        ...
        assert set(hub.files("me/thing", repo_type="dataset")) == {".gitattributes", "README.md", ...}
        assert hub.token_leaks() == []                                # the token travelled only in Authorization

What the fixture sets for the duration of one test:

- ``HF_ENDPOINT`` (environment, so subprocesses see it too), ``huggingface_hub.constants.ENDPOINT`` and the URL
  template, the module-level ``HfApi`` of ``huggingface_hub``, ``datasets.config.HF_ENDPOINT``, and resets
  ``transformers``' shared ``HfApi`` so it is rebuilt against the stand-in;
- ``HF_TOKEN`` to a fresh fake token (``hub.token``), and a private Hub cache folder;
- ``HF_HUB_DISABLE_XET=1``: uploads go through the plain LFS protocol, which the stand-in implements (Xet's
  content-addressed storage is a separate service it does not emulate).

Like the real Hub, a new repo starts with one commit holding ``.gitattributes``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

USER = "test-user"
"""The user the fake token belongs to: repos created without a namespace land under it."""

_GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
_LFS_SUFFIXES = (
    ".parquet", ".arrow", ".safetensors", ".bin", ".pt", ".pth", ".png", ".jpg", ".jpeg", ".tar.gz", ".zip",
)
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}
_SPACE_SDKS = {"gradio", "docker", "static"}


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Blob:
    """One file's content in a commit; ``lfs`` tells whether it arrived through the LFS protocol."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        return _git_blob_sha1(self.data)


@dataclasses.dataclass
class Commit:
    oid: str
    title: str
    description: str
    files: dict[str, Blob]
    date: str


@dataclasses.dataclass
class Repo:
    """A repository on the stand-in: its type, visibility, branches and commits."""

    repo_id: str
    repo_type: str
    private: bool
    sdk: str | None = None  # a Space's SDK ("gradio", "docker", "static"); None for models and datasets
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    branches: dict[str, str] = dataclasses.field(default_factory=dict)

    def head(self, revision: str = "main") -> Commit | None:
        """The commit a revision (branch name, full or abbreviated commit id) points at, or None."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for oid, c in self.commits.items() if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        return None


@dataclasses.dataclass
class RecordedRequest:
    """One request the stand-in received: what a test may assert on."""

    method: str
    path: str
    headers: Message  # case-insensitive: headers.get("authorization")
    body_size: int


class _HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


class HubStandIn:
    """State and controls of one stand-in server. Attributes a test uses:

    - ``url``: the endpoint, e.g. ``http://127.0.0.1:45678``;
    - ``token``: the fake token set in ``HF_TOKEN`` (the only one the server accepts);
    - ``repos``: ``{(repo_type, repo_id): Repo}`` (a Space's ``Repo.sdk`` is the SDK it was created with);
    - ``files(repo_id, repo_type="model", revision="main") -> {path: bytes}``;
    - ``lfs_files(repo_id, repo_type="model") -> set of paths`` that arrived through LFS;
    - ``requests``: every ``RecordedRequest``, in order;
    - ``token_leaks()``: where the token appeared other than in an ``Authorization: Bearer`` header;
    - ``fail_next_commit = True``: the next commit answers HTTP 500 (then the flag resets);
    - ``fail_next(kind, status=500, times=1)``: the same for ``"create-repo"``, ``"preupload"``, ``"lfs-batch"``,
      ``"lfs-upload"`` or ``"commit"`` (the client retries 5xx on preupload and LFS calls, so ask for more times);
    - ``lfs_threshold``: files at least this big go through LFS (default 10 MiB, as on the Hub), as do binary
      files and the usual LFS suffixes;
    - ``multipart_chunk_size``: LFS files bigger than this are uploaded in parts (default 64 MiB).
    """

    def __init__(self) -> None:
        self.token = "hf_standin_" + secrets.token_hex(16)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.lfs_threshold = 10 * 1024 * 1024
        self.multipart_chunk_size = 64 * 1024 * 1024
        self.fail_next_commit = False
        self._failures: dict[str, list[int]] = {}
        self._leaks: list[str] = []
        self._lfs_objects: dict[str, bytes] = {}
        self._lfs_parts: dict[tuple[str, int], bytes] = {}
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-stand-in", daemon=True
        )

    # ---- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> HubStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- what tests read -------------------------------------------------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        try:
            return self.repos[(repo_type, repo_id)]
        except KeyError:
            known = sorted(f"{t}:{r}" for t, r in self.repos)
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the Hub stand-in; repos: {known}") from None

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Contents of every file at ``revision``: ``{path_in_repo: bytes}``. Raises KeyError for an unknown repo."""
        commit = self.repo(repo_id, repo_type).head(revision)
        if commit is None:
            raise KeyError(f"no revision {revision!r} in {repo_type} repo {repo_id!r}")
        return {path: blob.data for path, blob in commit.files.items()}

    def lfs_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """Paths at ``revision`` whose content arrived through the LFS protocol."""
        commit = self.repo(repo_id, repo_type).head(revision)
        return {path for path, blob in commit.files.items() if blob.lfs} if commit else set()

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit titles, oldest first."""
        return [c.title for c in self.repo(repo_id, repo_type).commits.values()]

    def token_leaks(self) -> list[str]:
        """Places where the token was seen outside an ``Authorization: Bearer`` header (URL, other header, body)."""
        return list(self._leaks)

    def fail_next(self, kind: str, status: int = 500, times: int = 1) -> None:
        """Make the next ``times`` requests of ``kind`` fail with HTTP ``status``."""
        kinds = {"create-repo", "preupload", "lfs-batch", "lfs-upload", "commit"}
        if kind not in kinds:
            raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(kinds)}")
        self._failures.setdefault(kind, []).extend([status] * times)

    # ---- server internals ------------------------------------------------------------------------------------------
    def _maybe_fail(self, kind: str) -> None:
        if kind == "commit" and self.fail_next_commit:
            self.fail_next_commit = False
            raise _HubError(500, "Internal Error (made to fail by the test)")
        pending = self._failures.get(kind)
        if pending:
            raise _HubError(pending.pop(0), f"{kind} made to fail by the test")

    def _record(self, method: str, raw_path: str, headers: Message, body: bytes) -> None:
        self.requests.append(RecordedRequest(method, raw_path, headers, len(body)))
        token = self.token
        if token in unquote(raw_path):
            self._leaks.append(f"URL of {method} {raw_path.split('?')[0]}")
        for name, value in headers.items():
            if token in value and not (name.lower() == "authorization" and value == f"Bearer {token}"):
                self._leaks.append(f"header {name} of {method} {raw_path}")
        if token.encode() in body:
            self._leaks.append(f"body of {method} {raw_path}")

    def _user(self, headers: dict[str, str], required: bool) -> str | None:
        auth = headers.get("authorization")
        if auth is None:
            if required:
                raise _HubError(401, "Invalid credentials in Authorization header")
            return None
        if auth != f"Bearer {self.token}":
            raise _HubError(401, "Invalid credentials in Authorization header")
        return USER

    def _get_repo(self, repo_type: str, repo_id: str, headers: dict[str, str]) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        user = self._user(headers, required=False)
        if repo is None or (repo.private and user is None):
            raise _HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, branch: str, title: str, description: str, files: dict[str, Blob]) -> Commit:
        oid = hashlib.sha1(f"{repo.repo_id}{len(repo.commits)}{time.time_ns()}".encode()).hexdigest()
        commit = Commit(oid, title, description, files, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit


def _is_lfs(hub: HubStandIn, path: str, size: int, sample: bytes) -> bool:
    return size >= hub.lfs_threshold or path.lower().endswith(_LFS_SUFFIXES) or b"\0" in sample


def _tree_entries(commit: Commit, prefix: str, recursive: bool) -> list[dict]:
    """Tree listing of folder ``prefix`` ("" for the root) in the Hub's JSON shape, folders first."""
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    folders: dict[str, None] = {}
    files = []
    for path, blob in sorted(commit.files.items()):
        if not path.startswith(base):
            continue
        rest = path[len(base) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            if depth > 1 and not recursive:
                break
            folders[base + "/".join(parts[:depth])] = None
        if len(parts) == 1 or recursive:
            files.append(_file_entry(path, blob))
    return [_folder_entry(f) for f in folders] + files


def _file_entry(path: str, blob: Blob) -> dict:
    entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 134}
    return entry


def _folder_entry(path: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path}


def _make_handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
            pass

        # -- plumbing ------------------------------------------------------------------------------------------------
        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _dispatch(self) -> None:
            body = self._read_body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            with hub._lock:
                hub._record(self.command, self.path, self.headers, body)
            split = urlsplit(self.path)
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            query = parse_qs(split.query)
            try:
                with hub._lock:
                    _route(hub, self, self.command, segments, query, headers, body)
            except _HubError as err:
                extra = {"X-Error-Message": err.message}
                if err.error_code:
                    extra["X-Error-Code"] = err.error_code
                self._json(err.status, {"error": err.message}, extra)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    return Handler


def _route(hub: HubStandIn, h, method: str, seg: list[str], query: dict, headers: dict, body: bytes) -> None:
    """Map one request onto the stand-in's state; raise _HubError for an HTTP error."""
    # ---- account and repo management ----
    if seg[:2] == ["api", "whoami-v2"] and method == "GET":
        hub._user(headers, required=True)
        token_info = {"displayName": "stand-in", "role": "write"}
        return h._json(200, {"type": "user", "name": USER, "fullname": "Test User", "orgs": [],
                             "auth": {"type": "access_token", "accessToken": token_info}})
    if seg[:3] == ["api", "repos", "create"] and method == "POST":
        return _create_repo(hub, h, headers, json.loads(body or b"{}"))
    if seg[:3] == ["api", "repos", "delete"] and method == "DELETE":
        hub._user(headers, required=True)
        payload = json.loads(body or b"{}")
        key = (payload.get("type") or "model", f"{payload.get('organization') or USER}/{payload['name']}")
        if hub.repos.pop(key, None) is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return h._json(200, {})
    if seg[:2] == ["api", "validate-yaml"] and method == "POST":
        return _validate_yaml(h, json.loads(body or b"{}"))

    # ---- /api/{models,datasets,spaces}/{ns}/{name}/... ----
    if len(seg) >= 4 and seg[0] == "api" and seg[1] in _PLURAL_TO_TYPE:
        repo_type, repo_id, rest = _PLURAL_TO_TYPE[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:]
        if not rest and method == "GET":
            return _repo_info(hub, h, hub._get_repo(repo_type, repo_id, headers), "main")
        if rest[:1] == ["revision"] and method == "GET":
            return _repo_info(hub, h, hub._get_repo(repo_type, repo_id, headers), "/".join(rest[1:]))
        if rest[:1] == ["preupload"] and method == "POST":
            hub._user(headers, required=True)
            hub._maybe_fail("preupload")
            return _preupload(hub, h, hub._get_repo(repo_type, repo_id, headers), "/".join(rest[1:]), body)
        if rest[:1] == ["commit"] and method == "POST":
            hub._user(headers, required=True)
            hub._maybe_fail("commit")
            repo = hub._get_repo(repo_type, repo_id, headers)
            return _commit(hub, h, repo, "/".join(rest[1:]), query, body)
        if rest[:1] == ["tree"] and method == "GET":
            repo = hub._get_repo(repo_type, repo_id, headers)
            return _tree(h, repo, rest[1], "/".join(rest[2:]), query)
        if rest[:1] == ["paths-info"] and method == "POST":
            repo = hub._get_repo(repo_type, repo_id, headers)
            return _paths_info(h, repo, "/".join(rest[1:]), parse_qs(body.decode()))
        if rest[:1] == ["commits"] and method == "GET":
            repo = hub._get_repo(repo_type, repo_id, headers)
            return _list_commits(h, repo, "/".join(rest[1:]))
        if rest[:1] == ["branch"] and method == "POST":
            hub._user(headers, required=True)
            return _create_branch(h, hub._get_repo(repo_type, repo_id, headers), "/".join(rest[1:]), body)
        if rest == ["refs"] and method == "GET":
            repo = hub._get_repo(repo_type, repo_id, headers)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
            return h._json(200, {"branches": branches, "tags": [], "converts": []})

    # ---- LFS: batch API and the storage it points at ----
    if len(seg) >= 5 and seg[-4:] == ["info", "lfs", "objects", "batch"] and method == "POST":
        repo_type, repo_id = _repo_from_git_path(seg[:-4])
        hub._user(headers, required=True)
        hub._maybe_fail("lfs-batch")
        return _lfs_batch(hub, h, hub._get_repo(repo_type, repo_id, headers), json.loads(body))
    if seg[:1] == ["__lfs__"]:
        return _lfs_storage(hub, h, method, seg[1:], body)

    # ---- file download: /{prefix}{ns}/{name}/resolve/{revision}/{path} ----
    if "resolve" in seg and method in ("GET", "HEAD"):
        index = seg.index("resolve")
        repo_type = _PLURAL_TO_TYPE.get(seg[0], "model") if index == 3 else "model"
        repo_id = "/".join(seg[index - 2 : index])
        return _resolve(h, hub._get_repo(repo_type, repo_id, headers), seg[index + 1], "/".join(seg[index + 2 :]))

    raise _HubError(404, f"the Hub stand-in has no route for {method} /{'/'.join(seg)}")


def _repo_from_git_path(seg: list[str]) -> tuple[str, str]:
    if seg and seg[0] in _PLURAL_TO_TYPE and len(seg) == 3:
        repo_type, ns, name = _PLURAL_TO_TYPE[seg[0]], seg[1], seg[2]
    else:
        repo_type, ns, name = "model", seg[0], seg[1]
    return repo_type, f"{ns}/{name.removesuffix('.git')}"


def _create_repo(hub: HubStandIn, h, headers: dict, payload: dict) -> None:
    hub._user(headers, required=True)
    hub._maybe_fail("create-repo")
    repo_type = payload.get("type") or "model"
    repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
    url = f"{hub.url}/{_TYPE_PREFIX[repo_type]}{repo_id}"
    if (repo_type, repo_id) in hub.repos:
        return h._json(409, {"error": "You already created this repo", "url": url})
    private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
    sdk = payload.get("sdk")
    if repo_type == "space" and sdk not in _SPACE_SDKS:
        raise _HubError(400, f"a Space needs an sdk, one of {sorted(_SPACE_SDKS)}; got {sdk!r}")
    repo = Repo(repo_id, repo_type, private, sdk=sdk if repo_type == "space" else None)
    hub._commit(repo, "main", "initial commit", "", {".gitattributes": Blob(_GITATTRIBUTES, lfs=False)})
    hub.repos[(repo_type, repo_id)] = repo
    return h._json(200, {"url": url, "name": repo_id, "id": repo_id})


def _validate_yaml(h, payload: dict) -> None:
    content = payload.get("content", "")
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
    if match is None:
        return h._json(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return h._json(400, {"errors": [{"message": f"invalid YAML: {err}"}]}, {"X-Error-Message": "invalid YAML"})
    if metadata is not None and not isinstance(metadata, dict):
        return h._json(400, {"errors": [{"message": "YAML metadata must be a mapping"}]})
    return h._json(200, {"errors": [], "warnings": []})


def _head_or_404(repo: Repo, revision: str) -> Commit:
    commit = repo.head(revision)
    if commit is None:
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    return commit


def _repo_info(hub: HubStandIn, h, repo: Repo, revision: str) -> None:
    commit = _head_or_404(repo, revision)
    siblings = [
        {"rfilename": p, "size": len(b.data), "blobId": b.git_oid,
         **({"lfs": {"size": len(b.data), "sha256": b.sha256, "pointerSize": 134}} if b.lfs else {})}
        for p, b in sorted(commit.files.items())
    ]
    return h._json(200, {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
        "createdAt": next(iter(repo.commits.values())).date, "private": repo.private, "gated": False,
        "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
    })


def _preupload(hub: HubStandIn, h, repo: Repo, revision: str, body: bytes) -> None:
    commit = _head_or_404(repo, revision)
    files = []
    for entry in json.loads(body)["files"]:
        path, size, sample = entry["path"], entry["size"], base64.b64decode(entry["sample"])
        lfs = _is_lfs(hub, path, size, sample)
        existing = commit.files.get(path)
        oid = None
        if existing is not None:
            oid = existing.sha256 if existing.lfs else existing.git_oid
        files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
    return h._json(200, {"files": files, "commitOid": commit.oid})


def _lfs_batch(hub: HubStandIn, h, repo: Repo, payload: dict) -> None:
    objects = []
    for obj in payload["objects"]:
        oid, size = obj["oid"], obj["size"]
        if oid in hub._lfs_objects:
            objects.append({"oid": oid, "size": size})  # already stored: no actions, the client skips the upload
            continue
        href = f"{hub.url}/__lfs__/{oid}"
        upload: dict = {"href": href}
        if size > hub.multipart_chunk_size:
            parts = -(-size // hub.multipart_chunk_size)
            upload["header"] = {"chunk_size": str(hub.multipart_chunk_size),
                                **{f"{n:05d}": f"{href}/part/{n}" for n in range(1, parts + 1)}}
        objects.append({"oid": oid, "size": size, "authenticated": True,
                        "actions": {"upload": upload, "verify": {"href": f"{href}/verify"}}})
    return h._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                   {"Content-Type": "application/vnd.git-lfs+json"})


def _lfs_storage(hub: HubStandIn, h, method: str, seg: list[str], body: bytes) -> None:
    oid = seg[0]
    if method == "PUT" and len(seg) == 1:
        hub._maybe_fail("lfs-upload")
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HubError(400, f"uploaded content does not match sha256 {oid}")
        hub._lfs_objects[oid] = body
        return h._send(200)
    if method == "PUT" and len(seg) == 3 and seg[1] == "part":
        hub._maybe_fail("lfs-upload")
        hub._lfs_parts[(oid, int(seg[2]))] = body
        return h._send(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
    if method == "POST" and len(seg) == 1:  # multi-part completion
        parts = json.loads(body)["parts"]
        data = b"".join(hub._lfs_parts.pop((oid, p["partNumber"])) for p in parts)
        if hashlib.sha256(data).hexdigest() != oid:
            raise _HubError(400, f"assembled parts do not match sha256 {oid}")
        hub._lfs_objects[oid] = data
        return h._json(200, {})
    if method == "POST" and seg[1:] == ["verify"]:
        if oid not in hub._lfs_objects or len(hub._lfs_objects[oid]) != json.loads(body)["size"]:
            raise _HubError(404, f"LFS object {oid} was not uploaded")
        return h._json(200, {})
    raise _HubError(404, "no such LFS storage route")


def _commit(hub: HubStandIn, h, repo: Repo, revision: str, query: dict, body: bytes) -> None:
    if query.get("create_pr"):
        raise _HubError(400, "the Hub stand-in does not open pull requests")
    if revision not in repo.branches:
        raise _HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    header = next(line["value"] for line in lines if line["key"] == "header")
    head = repo.head(revision)
    parent = header.get("parentCommit")
    if parent is not None and not head.oid.startswith(parent):
        raise _HubError(412, f"parent commit {parent} is not the head of {revision} ({head.oid})")
    files = dict(head.files)
    for line in lines:
        key, value = line["key"], line["value"]
        if key == "file":
            files[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
        elif key == "lfsFile":
            data = hub._lfs_objects.get(value["oid"])
            if data is None:
                raise _HubError(400, f"LFS file {value['path']} points at object {value['oid']}, never uploaded")
            files[value["path"]] = Blob(data, lfs=True)
        elif key == "deletedFile":
            if files.pop(value["path"], None) is None:
                raise _HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
        elif key == "deletedFolder":
            prefix = value["path"].rstrip("/") + "/"
            for path in [p for p in files if p.startswith(prefix)]:
                del files[path]
    commit = hub._commit(repo, revision, header["summary"], header.get("description", ""), files)
    url = f"{hub.url}/{_TYPE_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
    return h._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})


def _tree(h, repo: Repo, revision: str, path: str, query: dict) -> None:
    commit = _head_or_404(repo, revision)
    recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
    path = path.strip("/")
    if path and path in commit.files:
        return h._json(200, [_file_entry(path, commit.files[path])])
    if path and not any(p.startswith(path + "/") for p in commit.files):
        raise _HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
    return h._json(200, _tree_entries(commit, path, recursive))


def _paths_info(h, repo: Repo, revision: str, form: dict) -> None:
    commit = _head_or_404(repo, revision)
    out = []
    for path in form.get("paths", []):
        path = path.strip("/")
        if path in commit.files:
            out.append(_file_entry(path, commit.files[path]))
        elif any(p.startswith(path + "/") for p in commit.files):
            out.append(_folder_entry(path))
    return h._json(200, out)


def _list_commits(h, repo: Repo, revision: str) -> None:
    head = _head_or_404(repo, revision)
    history = list(repo.commits.values())
    history = history[: history.index(head) + 1][::-1]
    return h._json(200, [{"id": c.oid, "title": c.title, "message": c.description, "authors": [{"user": USER}],
                          "date": c.date} for c in history])


def _create_branch(h, repo: Repo, branch: str, body: bytes) -> None:
    if branch in repo.branches:
        raise _HubError(409, f"Reference already exists: {branch}")
    start = (json.loads(body) if body else {}).get("startingPoint") or "main"
    repo.branches[branch] = _head_or_404(repo, start).oid
    return h._json(200, {})


def _resolve(h, repo: Repo, revision: str, path: str) -> None:
    commit = _head_or_404(repo, revision)
    blob = commit.files.get(path)
    if blob is None:
        raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
    etag = f'"{blob.sha256 if blob.lfs else blob.git_oid}"'
    headers = {"X-Repo-Commit": commit.oid, "ETag": etag, "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream"}
    if blob.lfs:
        headers |= {"X-Linked-Etag": etag, "X-Linked-Size": str(len(blob.data))}
    data = blob.data
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
    if match:
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else len(data) - 1
        if start >= len(data):
            return h._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
        return h._send(206, data[start : end + 1], headers)
    return h._send(200, data, headers)


# ---- the fixture ---------------------------------------------------------------------------------------------------
def _point_clients_at(monkeypatch: pytest.MonkeyPatch, hub: HubStandIn, cache_dir: str) -> None:
    """Point every Hub client already imported (and every one imported later) at the stand-in."""
    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    for name, value in {
        "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
        "HF_HUB_CACHE": cache_dir, "HF_HUB_DISABLE_TELEMETRY": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    if hasattr(constants, "HF_URL_HOSTS"):  # huggingface_hub 1+; the IPU environment's 0.36 has no host allow-list
        monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache_dir)
    parsed = urlparse(hub.url)
    if hasattr(_http, "_HUB_ORIGINS"):
        monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {("http", "127.0.0.1", parsed.port)})
    monkeypatch.setattr(hf_api.api, "endpoint", hub.url)

    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", hub.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False, raising=False)
    _reset_cached_clients()


def _reset_cached_clients() -> None:
    """Drop clients that captured an endpoint when first built: fsspec's HfFileSystem instances, transformers' HfApi."""
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        transformers_hub._hf_api = None


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStandIn]:
    """A fresh local Hub stand-in, with HF_ENDPOINT, huggingface_hub, datasets and transformers pointed at it."""
    stand_in = HubStandIn().start()
    _point_clients_at(monkeypatch, stand_in, str(tmp_path_factory.mktemp("hub-cache")))
    try:
        yield stand_in
    finally:
        stand_in.stop()
        _reset_cached_clients()
