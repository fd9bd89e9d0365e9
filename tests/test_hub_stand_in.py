"""The Hub stand-in answers the real huggingface_hub and datasets clients as the Hub would."""

import os

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "upload"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: other\n---\n# Card\n")
    (root / "config.json").write_text('{"a": 1}')
    (root / "data" / "weights.safetensors").write_bytes(os.urandom(300_000))
    return root


def test_create_repo_upload_folder_and_download_back(hub, folder):
    api = HfApi()
    url = api.create_repo("demo-model")
    assert url.repo_id == "test-user/demo-model"
    api.upload_folder(folder_path=folder, repo_id=url.repo_id, commit_message="add model")

    files = hub.files("test-user/demo-model")
    assert set(files) == {".gitattributes", "README.md", "config.json", "data/weights.safetensors"}
    assert files["data/weights.safetensors"] == (folder / "data" / "weights.safetensors").read_bytes()
    assert hub.lfs_files("test-user/demo-model") == {"data/weights.safetensors"}
    assert hub.commits("test-user/demo-model") == ["initial commit", "add model"]

    downloaded = hf_hub_download("test-user/demo-model", "data/weights.safetensors")
    assert open(downloaded, "rb").read() == files["data/weights.safetensors"]
    assert sorted(api.list_repo_files("test-user/demo-model")) == sorted(files)


def test_create_commit_with_large_multipart_lfs_file_and_deletion(hub, tmp_path):
    hub.lfs_threshold = 1024 * 1024
    hub.multipart_chunk_size = 512 * 1024
    big = os.urandom(1_300_000)  # 3 parts
    api = HfApi()
    api.create_repo("me/data", repo_type="dataset", private=True)
    api.create_commit(
        "me/data",
        repo_type="dataset",
        operations=[
            CommitOperationAdd("blob.txt", big),
            CommitOperationAdd("notes.txt", b"small text"),
            CommitOperationDelete(".gitattributes"),
        ],
        commit_message="big one",
    )
    files = hub.files("me/data", repo_type="dataset")
    assert files == {"blob.txt": big, "notes.txt": b"small text"}
    assert hub.lfs_files("me/data", repo_type="dataset") == {"blob.txt"}
    assert hub.repo("me/data", "dataset").private
    assert api.repo_info("me/data", repo_type="dataset").private


def test_token_travels_only_in_authorization_header(hub, folder):
    api = HfApi()
    api.create_repo("me/model")
    api.upload_folder(folder_path=folder, repo_id="me/model")
    writes = [r for r in hub.requests if r.method == "POST" and "/commit/" in r.path]
    assert writes and all(r.headers.get("Authorization") == f"Bearer {hub.token}" for r in writes)
    assert hub.token_leaks() == []


def test_failed_commit_is_an_http_error_and_changes_nothing(hub, folder):
    api = HfApi()
    api.create_repo("me/model")
    hub.fail_next_commit = True
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_folder(folder_path=folder, repo_id="me/model")
    assert excinfo.value.response.status_code == 500
    assert set(hub.files("me/model")) == {".gitattributes"}
    api.upload_folder(folder_path=folder, repo_id="me/model")  # the flag resets after one failure
    assert "config.json" in hub.files("me/model")


def test_wrong_token_and_missing_repo_are_refused(hub):
    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(token="hf_wrong").create_repo("me/x")
    assert excinfo.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        HfApi().repo_info("me/absent")


def test_datasets_push_to_hub_two_configs_and_load_back(hub):
    from datasets import Dataset, DatasetDict, load_dataset

    small = DatasetDict({
        "train": Dataset.from_dict({"x": [1, 2, 3]}),
        "test": Dataset.from_dict({"x": [4]}),
    })
    small.push_to_hub("me/numbers", config_name="small")
    small.map(lambda row: {"x": row["x"] * 10}).push_to_hub("me/numbers", config_name="big")

    files = hub.files("me/numbers", repo_type="dataset")
    parquet = sorted(p for p in files if p.endswith(".parquet"))
    assert parquet == [
        "big/test-00000-of-00001.parquet", "big/train-00000-of-00001.parquet",
        "small/test-00000-of-00001.parquet", "small/train-00000-of-00001.parquet",
    ]
    card = files["README.md"].decode()
    assert "config_name: small" in card and "config_name: big" in card

    loaded = load_dataset("me/numbers", "big", split="train")
    assert loaded["x"] == [10, 20, 30]


def test_transformers_shared_client_reaches_the_stand_in(hub, folder):
    from transformers.utils.hub import hf_api  # what Trainer.push_to_hub and PushToHubMixin call

    repo_id = hf_api().create_repo("vit-chestxray", exist_ok=True).repo_id
    hf_api().upload_folder(repo_id=repo_id, folder_path=folder, commit_message="End of training")
    assert "config.json" in hub.files("test-user/vit-chestxray")
    assert hf_api().create_repo("vit-chestxray", exist_ok=True).repo_id == repo_id  # 409 + exist_ok, as on the Hub


def test_a_space_is_created_with_its_sdk_and_refused_without_one(hub, folder):
    import json
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    HfApi().create_repo("demo-space", repo_type="space", space_sdk="gradio")
    HfApi().upload_folder(folder_path=folder, repo_id="test-user/demo-space", repo_type="space")
    assert hub.repo("test-user/demo-space", repo_type="space").sdk == "gradio"
    assert "README.md" in hub.files("test-user/demo-space", repo_type="space")
    request = Request(f"{hub.url}/api/repos/create", data=json.dumps({"name": "no-sdk", "type": "space"}).encode(),
                      headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"})
    with pytest.raises(HTTPError) as refused:
        urlopen(request)
    assert refused.value.code == 400 and ("space", "test-user/no-sdk") not in hub.repos
