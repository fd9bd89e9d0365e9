"""Benchmark: whole training steps per second (forward, BCE loss, backward, AdamW step) in images/s, their model FLOPs
utilisation (MFU), and the recipe's full Trainer loop against the model-only step.

Two set-ups run side by side on the same synthetic batch, in the same process:

- **baseline** -- a 2022-style step: fp32, eager attention, the non-fused, non-foreach AdamW;
- **recipe** -- what ``training/run.py`` uses: SDPA attention (flash attention on GPUs that have it), fused AdamW,
  and on CUDA bf16 autocast and TF32 (plus ``torch.compile`` with ``--compile``).

Models: the tiny ViT of the offline demo on CPU, and ViT-B/16 at 224 px (google/vit-base-patch16-224-in21k's
architecture, randomly initialised, so nothing is downloaded) when CUDA is available.

- **MFU**: FLOPs of one training step per image, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the model
  itself (forward and backward), times images/s, over the GPU's dense bf16 peak (:data:`PEAK_BF16_TFLOPS`, from
  NVIDIA's datasheets; ``--peak-tflops`` for another device).
- **full loop** (``--full-loop``): the recipe's own Trainer (``ChestXray14Trainer``, its collator, device-side
  augmentation and hardware defaults: data-loader workers, pinned memory, bf16) trains on a synthetic ``resized-256``
  release read by its real DataLoader, with the recipe set-up's settings; the steps after ``--warmup`` are timed. Its
  rate over the model-only recipe step shows what the data path costs (target: at least 0.9x).
- **profile** (``--profile DIR``): a ``torch.profiler`` trace of a few model-only recipe steps (Chrome trace in DIR)
  and the top operators by device time.

    python benchmarks/train_step.py                 # both models where possible
    python benchmarks/train_step.py --model vit-base --batch-size 256 --compile --full-loop --profile prof/
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from transformers import AutoModelForImageClassification, TrainerCallback, TrainingArguments, ViTConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the recipe's modules live in the clone, as in transformers' examples
    sys.path.insert(0, str(REPO_ROOT))

from nih_chestxray14.labels import NUM_LABELS  # noqa: E402

GPU_TARGET_IMAGES_PER_S = 3000.0
TUTORIAL_IPU_IMAGES_PER_S = 303.0  # the 2022 tutorial's reported throughput on 4 IPUs
FULL_LOOP_TARGET = 0.9
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
"""Dense bf16 tensor-core peak, TFLOP/s, of the SXM parts (NVIDIA's H100/H200 and A100 datasheets; the PCIe H100
is lower, 756: give ``--peak-tflops``)."""

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


def training_step(spec: ModelSpec, setup: StepSetup, device: torch.device, batch_size: int) -> Callable[[], None]:
    """One set-up's whole training step (forward, BCE loss, backward, AdamW) on a fixed synthetic batch on
    ``device``, as a function to call."""
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

    return step


def images_per_second(spec: ModelSpec, setup: StepSetup, device: torch.device, batch_size: int, steps: int,
                      warmup: int) -> float:
    """Run ``warmup`` untimed and ``steps`` timed training steps; return images/s over the timed ones."""
    step = training_step(spec, setup, device, batch_size)
    for _ in range(warmup):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return batch_size * steps / (time.perf_counter() - start)


def training_flops_per_image(spec: ModelSpec, device: torch.device, batch_size: int = 2) -> float:
    """FLOPs of one forward and backward pass per image, counted by torch's ``FlopCounterMode`` (matrix products,
    convolutions and attention; the optimizer's elementwise work is left out, as MFU usually does)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(spec, "sdpa", device)
    size = model.config.image_size
    pixel_values = torch.randn(batch_size, 3, size, size, device=device)
    labels = torch.zeros(batch_size, NUM_LABELS, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(pixel_values=pixel_values, labels=labels).loss.backward()
    return counter.get_total_flops() / batch_size


def peak_flops(device: torch.device, peak_tflops: Optional[float]) -> Optional[float]:
    """The device's dense bf16 peak in FLOP/s: ``peak_tflops`` if given, else from :data:`PEAK_BF16_TFLOPS`."""
    if peak_tflops:
        return peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)


class StepTimer(TrainerCallback):
    """Times the Trainer's optimizer steps after the first ``warmup`` (device synchronised at both ends)."""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device, self.start, self.seconds, self.steps = warmup, device, None, None, 0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup and self.start is None:
            _synchronize(self.device)
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and state.global_step == state.max_steps:
            _synchronize(self.device)
            self.seconds = time.perf_counter() - self.start
            self.steps = state.global_step - self.warmup


def full_loop_rate(model_key: str, device: torch.device, batch_size: int, steps: int, warmup: int,
                   compile_model: bool, workdir: Path, release_images: int) -> float:
    """Images/s of the recipe's Trainer over ``steps`` timed steps, fed by its DataLoader from a synthetic
    ``resized-256`` release of about ``release_images`` images (built once in ``workdir``)."""
    from training.arguments import parse_arguments
    from training.augment import AugmentAndNormalise
    from training.data import collate_xrays, xray_view
    from training.dataset import load_chestxray14, write_sample_release
    from training.loss import MultiLabelBCELoss
    from training.model import build_config, build_image_processor, build_model, image_geometry
    from training.trainer import ChestXray14Trainer

    spec = MODELS[model_key]
    overrides = ",".join(f"{key}={value}" for key, value in spec.config.items())
    argv = ["--model_type", "vit", "--data_dir", str(workdir / "release"), "--make_sample_release",
            "--sample_num_patients", str(max(4, release_images // 4)), "--sample_images_per_patient", "4",
            "--sample_image_size", "256", "--dataset_config_name", "resized-256",
            "--cache_dir", str(workdir / "cache"), "--output_dir", str(workdir / "output"),
            "--do_train", "--max_steps", str(warmup + steps), "--per_device_train_batch_size", str(batch_size),
            "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--logging_steps", str(10**6), "--dataloader_drop_last", "true", "--seed", "0",
            # the model-only step clips no gradients, and neither does the real job's config
            "--max_grad_norm", "0"]
    argv += ["--config_overrides", overrides] if overrides else []
    argv += ["--use_cpu"] if device.type == "cpu" else []
    argv += ["--torch_compile"] if compile_model else []
    model_args, data_args, _, training_args = parse_arguments(argv, TrainingArguments)
    write_sample_release(data_args)
    train = load_chestxray14(data_args, cache_dir=model_args.cache_dir)["train"]
    if len(train) < batch_size:
        raise ValueError(f"the synthetic release has {len(train)} training images, fewer than a batch of {batch_size}")
    config = build_config(model_args)
    model = build_model(model_args, config)
    geometry = image_geometry(build_image_processor(model_args, config))
    timer = StepTimer(warmup, device)
    trainer = ChestXray14Trainer(
        model=model, args=training_args, train_dataset=xray_view(train), data_collator=collate_xrays,
        compute_loss_func=MultiLabelBCELoss(None), callbacks=[timer],
        augment_and_normalise=AugmentAndNormalise(geometry, data_args.augmentation()),
    )
    trainer.train()
    if timer.seconds is None or timer.steps < 1:
        raise RuntimeError("the full loop finished before its timed steps")
    return batch_size * timer.steps / timer.seconds


def profile_steps(spec: ModelSpec, setup: "StepSetup", device: torch.device, batch_size: int, folder: Path,
                  steps: int = 5) -> str:
    """Profile ``steps`` model-only recipe steps; write a Chrome trace into ``folder``; return the top operators."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step(spec, setup, device, batch_size)
    for _ in range(3):
        step()
    _synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        _synchronize(device)
    folder.mkdir(parents=True, exist_ok=True)
    profiler.export_chrome_trace(str(folder / "train_step_trace.json"))
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=15)


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
        compile_model: bool, repeats: int, peak_tflops: Optional[float] = None, full_loop: bool = False,
        release_images: int = 2048, profile_dir: Optional[Path] = None, workdir: Optional[Path] = None) -> List[str]:
    spec = MODELS[model_key]
    batch_size = batch_size or (spec.batch_size_cuda if device.type == "cuda" else spec.batch_size_cpu)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    flops = training_flops_per_image(spec, device)
    peak = peak_flops(device, peak_tflops)
    rows = [f"### {spec.name} on {where}, batch {batch_size}: median of {repeats} runs of {steps} timed steps "
            f"after {warmup} warm-up steps; {flops / 1e9:.2f} GFLOPs per image per training step", "",
            "| set-up | images/s | ratio to baseline | MFU |", "| --- | ---: | ---: | ---: |"]
    setups = setups_for(device, compile_model)
    rates: Dict[str, List[float]] = {setup.name: [] for setup in setups}
    for _ in range(repeats):  # interleaved, so drift in clock speed or load hits both set-ups alike
        for setup in setups:
            rates[setup.name].append(images_per_second(spec, setup, device, batch_size, steps, warmup))
            logger.info("%s: %.1f images/s", setup.name, rates[setup.name][-1])
    baseline = statistics.median(rates[setups[0].name])
    for setup in setups:
        rate = statistics.median(rates[setup.name])
        mfu = f"{rate * flops / peak:.1%}" if peak else "n/a (peak unknown: --peak-tflops)"
        rows.append(f"| {setup.name} | {rate:,.1f} | {rate / baseline:.2f}x | {mfu} |")
    if full_loop:
        with tempfile.TemporaryDirectory() as scratch:
            loop = full_loop_rate(model_key, device, batch_size, steps, warmup, setups[-1].compile,
                                  Path(workdir or scratch), release_images)
        rows += ["", f"Full loop (the recipe's Trainer fed by its DataLoader from a synthetic resized-256 release, "
                 f"{setups[-1].name.split(': ', 1)[1]}): {loop:,.1f} images/s = {loop / rate:.2f}x the model-only "
                 f"recipe step (target {FULL_LOOP_TARGET}x: {'met' if loop / rate >= FULL_LOOP_TARGET else 'NOT met'})."]
    if profile_dir is not None:
        rows += ["", "Profile of 5 model-only recipe steps (trace in "
                 f"{profile_dir / 'train_step_trace.json'}):", "", "```",
                 profile_steps(spec, setups[-1], device, batch_size, profile_dir), "```"]
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
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for MFU")
    parser.add_argument("--full-loop", action="store_true",
                        help="also time the recipe's Trainer fed by its DataLoader (builds a synthetic release)")
    parser.add_argument("--release-images", type=int, default=2048, help="images of the full loop's release")
    parser.add_argument("--workdir", default=None, help="folder for the full loop's release and cache (kept)")
    parser.add_argument("--profile", default=None, help="folder for a torch.profiler trace of the recipe step")
    args = parser.parse_args(argv)
    extra = dict(peak_tflops=args.peak_tflops, full_loop=args.full_loop, release_images=args.release_images,
                 profile_dir=Path(args.profile) if args.profile else None,
                 workdir=Path(args.workdir) if args.workdir else None)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    lines = ["## Training step (forward + backward + AdamW), synthetic batch on the device", ""]
    cuda = torch.cuda.is_available()
    if args.model in ("all", "tiny"):
        lines += run("tiny", torch.device(args.device or "cpu"), args.batch_size, args.steps, args.warmup,
                     args.compile, args.repeats, **extra)
    if args.model in ("all", "vit-base"):
        device = torch.device(args.device or ("cuda" if cuda else "cpu"))
        if device.type == "cuda" and not cuda:
            lines += ["ViT-B/16: skipped: no CUDA device.", ""]
        elif device.type != "cuda" and args.model == "all":
            lines += ["ViT-B/16 at 224 px: skipped: no CUDA (the 3,000 images/s target is for one H100; run "
                      "`python benchmarks/train_step.py --model vit-base` on a GPU machine).", ""]
        else:
            lines += run("vit-base", device, args.batch_size, args.steps, args.warmup, args.compile, args.repeats,
                         **extra)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
