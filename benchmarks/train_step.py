"""Benchmark: whole training steps per second (forward, BCE loss, backward, AdamW step) in images/s.

Two set-ups run side by side on the same synthetic batch, in the same process:

- **baseline** -- a 2022-style step: fp32, eager attention, the non-fused, non-foreach AdamW;
- **recipe** -- what ``training/run.py`` uses: SDPA attention, fused AdamW, and on CUDA bf16 autocast and TF32
  (plus ``torch.compile`` with ``--compile``).

Models: the tiny ViT of the offline demo on CPU, and ViT-B/16 at 224 px (google/vit-base-patch16-224-in21k's
architecture, randomly initialised, so nothing is downloaded) when CUDA is available. On a GPU it also prints the
ratio to the project's target and to the 2022 tutorial's reported IPU throughput (both in ``benchmarks/README.md``).

Data loading is not part of the step (see ``input_pipeline.py``): the batch is made once on the device.

    python benchmarks/train_step.py                 # both models where possible
    python benchmarks/train_step.py --model vit-base --batch-size 256 --compile
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from transformers import AutoModelForImageClassification, ViTConfig

from nih_chestxray14.labels import NUM_LABELS

GPU_TARGET_IMAGES_PER_S = 3000.0
TUTORIAL_IPU_IMAGES_PER_S = 303.0  # the 2022 tutorial's reported throughput on 4 IPUs

logger = logging.getLogger("benchmarks.train_step")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: Dict[str, int]
    batch_size_cpu: int
    batch_size_cuda: int


MODELS = {
    # The offline demo's tiny ViT: training/configs/demo.json's --config_overrides.
    "tiny": ModelSpec("tiny ViT of the demo (2 layers, width 64, 32 px, 8 px patches)",
                      dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128), batch_size_cpu=32, batch_size_cuda=512),
    # ViTConfig's defaults are ViT-B/16 at 224 px: 12 layers, width 768, 12 heads, MLP 3072.
    "vit-base": ModelSpec("ViT-B/16, 224 px", {}, batch_size_cpu=8, batch_size_cuda=256),
}


@dataclass(frozen=True)
class StepSetup:
    name: str
    attn_implementation: str
    fused_adamw: bool
    autocast_bf16: bool
    compile: bool


def make_model(spec: ModelSpec, attn_implementation: str, device: torch.device) -> torch.nn.Module:
    config = ViTConfig(num_labels=NUM_LABELS, problem_type="multi_label_classification", **spec.config)
    torch.manual_seed(0)
    # from_config raises when it can't use the kernel asked for, so the model runs attn_implementation's kernel.
    model = AutoModelForImageClassification.from_config(config, attn_implementation=attn_implementation)
    return model.to(device).train()


def images_per_second(spec: ModelSpec, setup: StepSetup, device: torch.device, batch_size: int, steps: int,
                      warmup: int) -> float:
    """Run ``warmup`` untimed and ``steps`` timed training steps; return images/s over the timed ones."""
    model = make_model(spec, setup.attn_implementation, device)
    if setup.fused_adamw:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False, fused=False)
    forward = torch.compile(model) if setup.compile else model
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    labels = (torch.rand(batch_size, NUM_LABELS, generator=generator) < 0.1).float().to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setup.autocast_bf16):
            loss = forward(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return batch_size * steps / (time.perf_counter() - start)


def setups_for(device: torch.device, compile_model: bool) -> List[StepSetup]:
    on_cuda = device.type == "cuda"
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    return [
        StepSetup("baseline: fp32, eager attention, AdamW (for-loop)", "eager", False, False, False),
        StepSetup(
            "recipe: " + ", ".join(
                (["bf16 autocast + TF32"] if bf16 else ["fp32"]) + ["SDPA", "fused AdamW"]
                + (["torch.compile"] if compile_model else [])
            ),
            "sdpa", True, bf16, compile_model,
        ),
    ]


def run(model_key: str, device: torch.device, batch_size: Optional[int], steps: int, warmup: int,
        compile_model: bool, repeats: int) -> List[str]:
    spec = MODELS[model_key]
    batch_size = batch_size or (spec.batch_size_cuda if device.type == "cuda" else spec.batch_size_cpu)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows = [f"### {spec.name} on {where}, batch {batch_size}: median of {repeats} runs of {steps} timed steps "
            f"after {warmup} warm-up steps", "",
            "| set-up | images/s | ratio to baseline |", "| --- | ---: | ---: |"]
    setups = setups_for(device, compile_model)
    rates: Dict[str, List[float]] = {setup.name: [] for setup in setups}
    for _ in range(repeats):  # interleaved, so drift in clock speed or load hits both set-ups alike
        for setup in setups:
            rates[setup.name].append(images_per_second(spec, setup, device, batch_size, steps, warmup))
            logger.info("%s: %.1f images/s", setup.name, rates[setup.name][-1])
    baseline = statistics.median(rates[setups[0].name])
    for setup in setups:
        rate = statistics.median(rates[setup.name])
        rows.append(f"| {setup.name} | {rate:,.1f} | {rate / baseline:.2f}x |")
    if model_key == "vit-base" and device.type == "cuda":
        rows += ["", f"Recipe vs the 3,000 images/s H100 target: {rate / GPU_TARGET_IMAGES_PER_S:.2f}x; vs the "
                 f"tutorial's {TUTORIAL_IPU_IMAGES_PER_S:.0f} images/s on 4 IPUs (reported, not measured here): "
                 f"{rate / TUTORIAL_IPU_IMAGES_PER_S:.1f}x."]
    return rows + [""]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["all", *MODELS], default="all",
                        help="'all': the tiny ViT on CPU, and ViT-B/16 on CUDA when available")
    parser.add_argument("--device", default=None, help="'cpu' or 'cuda' (default: cuda for ViT-B/16 when available)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per set-up; the median is reported")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="add torch.compile to the recipe's set-up")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    lines = ["## Training step (forward + backward + AdamW), synthetic batch on the device", ""]
    cuda = torch.cuda.is_available()
    if args.model in ("all", "tiny"):
        lines += run("tiny", torch.device(args.device or "cpu"), args.batch_size, args.steps, args.warmup,
                     args.compile, args.repeats)
    if args.model in ("all", "vit-base"):
        device = torch.device(args.device or ("cuda" if cuda else "cpu"))
        if device.type == "cuda" and not cuda:
            lines += ["ViT-B/16: skipped: no CUDA device.", ""]
        elif device.type != "cuda" and args.model == "all":
            lines += ["ViT-B/16 at 224 px: skipped: no CUDA (the 3,000 images/s target is for one H100; run "
                      "`python benchmarks/train_step.py --model vit-base` on a GPU machine).", ""]
        else:
            lines += run("vit-base", device, args.batch_size, args.steps, args.warmup, args.compile, args.repeats)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
