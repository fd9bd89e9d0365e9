"""Benchmark: heatmaps per second of each method in ``training/heatmaps.py`` against the model's plain forward pass.

Side by side, in one process, on the same synthetic batch:

- **forward** -- the baseline: the model as the recipe builds it (SDPA attention), eval mode, no gradients;
- **attention_rollout** -- one forward pass with eager attention returning its weights, then the rollout; its map
  does not depend on the finding, so it counts one heatmap per image;
- **gradient_rollout**, **gradcam** -- one forward and one backward pass per (image, finding) heatmap.

The ratio is seconds per heatmap over seconds per image of the plain forward pass. Targets on CPU: attention rollout
within 1.5x, the gradient methods within 3x. Models are built from their configs with random weights, so nothing is
downloaded: the demo's tiny ViT, ViT-B/16 at 224 px, and ResNet-50 at 224 px (Grad-CAM only; CNNs have no attention).

    python benchmarks/heatmap_speed.py                          # all three models, CPU
    python benchmarks/heatmap_speed.py --model tiny --repeats 5
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from transformers import AutoModelForImageClassification, ResNetConfig, ViTConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ lives in the clone, as for the recipe

from training.heatmaps import class_heatmaps  # noqa: E402
from training.model import label_settings  # noqa: E402

logger = logging.getLogger("benchmarks.heatmap_speed")

TARGETS = {"attention_rollout": 1.5, "gradient_rollout": 3.0, "gradcam": 3.0}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "vit" or "resnet"
    config: Dict[str, int]
    image_size: int
    batch_size: int
    methods: Sequence[str]


MODELS = {
    "tiny": ModelSpec("tiny ViT of the demo (2 layers, width 64, 32 px, 8 px patches)", "vit",
                      dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128), 32, 32, ("attention_rollout", "gradient_rollout", "gradcam")),
    "vit-base": ModelSpec("ViT-B/16, 224 px", "vit", {}, 224, 4, ("attention_rollout", "gradient_rollout", "gradcam")),
    "resnet-50": ModelSpec("ResNet-50, 224 px", "resnet", {}, 224, 4, ("gradcam",)),
}


def make_model(spec: ModelSpec, attn_implementation: Optional[str]) -> torch.nn.Module:
    config_class = ViTConfig if spec.kind == "vit" else ResNetConfig
    config = config_class(**spec.config, **label_settings())
    torch.manual_seed(0)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return AutoModelForImageClassification.from_config(config, **kwargs).eval()


def seconds_per_call(work: Callable[[], object], calls: int, warmup: int) -> float:
    for _ in range(warmup):
        work()
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls


def run(model_key: str, calls: int, warmup: int, repeats: int, batch_size: Optional[int]) -> List[str]:
    spec = MODELS[model_key]
    batch = batch_size or spec.batch_size
    plain = make_model(spec, "sdpa" if spec.kind == "vit" else None)
    explained = make_model(spec, "eager" if spec.kind == "vit" else None)  # same weights; eager returns attention
    pixel_values = torch.randn(batch, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0))
    one_finding_each = [[index % 14] for index in range(batch)]

    def forward() -> None:
        with torch.no_grad():
            plain(pixel_values=pixel_values)

    work: Dict[str, Callable[[], object]] = {"forward": forward}
    for method in spec.methods:
        model = explained if method != "gradcam" else plain
        work[method] = (lambda model=model, method=method: class_heatmaps(model, pixel_values, one_finding_each, method))
    seconds: Dict[str, List[float]] = {name: [] for name in work}
    for _ in range(repeats):  # interleaved, so drift in clock speed or load hits every method alike
        for name, job in work.items():
            seconds[name].append(seconds_per_call(job, calls, warmup) / batch)
            logger.info("%s %s: %.2f ms per image", model_key, name, 1000 * seconds[name][-1])
    baseline = statistics.median(seconds["forward"])
    rows = [f"### {spec.name}, CPU ({torch.get_num_threads()} threads), batch {batch}: median of {repeats} runs of "
            f"{calls} calls after {warmup} warm-up calls", "",
            "| method | heatmaps/s | ms per heatmap | × forward pass | target |", "| --- | ---: | ---: | ---: | ---: |",
            f"| forward pass (baseline, images/s) | {1 / baseline:,.1f} | {1000 * baseline:.2f} | 1.00× | |"]
    for method in spec.methods:
        per_heatmap = statistics.median(seconds[method])
        ratio = per_heatmap / baseline
        verdict = "met" if ratio <= TARGETS[method] else "missed"
        rows.append(f"| {method} | {1 / per_heatmap:,.1f} | {1000 * per_heatmap:.2f} | {ratio:.2f}× | "
                    f"≤ {TARGETS[method]:g}× ({verdict}) |")
    return rows + [""]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["all", *MODELS], default="all")
    parser.add_argument("--batch-size", type=int, default=None, help="images per call (default: per model)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    lines = ["## Heatmaps per second vs the plain forward pass (one heatmap per image)", ""]
    for key in MODELS if args.model == "all" else [args.model]:
        lines += run(key, args.calls, args.warmup, args.repeats, args.batch_size)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
