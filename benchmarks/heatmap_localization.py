"""Benchmark: how well each heatmap method localizes, on a synthetic release whose boxes frame planted findings.

This is the measurement behind ``training/heatmaps.py``'s default for ViTs. In one run it writes a synthetic
release (``nih_chestxray14.sample``, the demo's settings, with a box row for half of the images instead of 5%),
trains the demo's tiny ViT on it with the recipe's ``main()``, then runs ``training/localize.py``'s ``main()`` once per
method on the test split. It prints, pooled over the findings the model learned (test AUC >= 0.95), the accuracy at
each T(IoBB), and the same for each method's heatmaps moved to random places in the lung fields.

    python benchmarks/heatmap_localization.py                       # the demo's settings; a few CPU minutes
    python benchmarks/heatmap_localization.py --image-size 64       # an 8 x 8 patch grid instead of 4 x 4
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ lives in the clone, as for the recipe

from nih_chestxray14.labels import LABELS  # noqa: E402
from nih_chestxray14.sample import make_release  # noqa: E402
from training.heatmaps import METHODS  # noqa: E402
from training.localize import main as localize  # noqa: E402
from training.run import main as run_recipe  # noqa: E402

LEARNED_AUC = 0.95


def train(workdir: Path, release: Path, image_size: int, epochs: int, seed: int) -> Dict[str, float]:
    """The demo's recipe (training/configs/demo.json's model and optimiser) on ``release``; its test metrics."""
    overrides = (f"hidden_size=64,num_hidden_layers=2,num_attention_heads=4,intermediate_size=128,"
                 f"image_size={image_size},patch_size=8")
    return run_recipe([
        "--model_type", "vit", "--config_overrides", overrides, "--data_dir", str(release),
        "--cache_dir", str(workdir / "cache"), "--output_dir", str(workdir / "model"), "--overwrite_output_dir",
        "--do_train", "--do_eval", "--do_predict", "--use_cpu", "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--learning_rate", "1e-3",
        "--warmup_steps", "20", "--lr_scheduler_type", "cosine", "--logging_steps", "50", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--save_total_limit", "1", "--seed", str(seed), "--dataloader_num_workers", "0",
    ])


def pooled(findings: Dict[str, dict], names: Sequence[str], threshold: str) -> float:
    """Accuracy over the boxes of ``names`` together (each finding weighted by its boxes)."""
    boxes = sum(findings[name]["num_boxes"] for name in names)
    return sum(findings[name]["by_threshold"][threshold]["accuracy"] * findings[name]["num_boxes"]
               for name in names) / boxes


def main(argv: Optional[List[str]] = None) -> Dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-patients", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--bbox-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the release, model and outputs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        release = make_release(workdir / "release", num_patients=args.num_patients, images_per_patient=3,
                               image_size=args.image_size, layout="images", signal_strength=2.5,
                               prevalence={name: 0.2 for name in LABELS}, bbox_fraction=args.bbox_fraction,
                               seed=args.seed)
        metrics = train(workdir, release, args.image_size, args.epochs, args.seed)
        results = {}
        for method in METHODS:
            results[method] = localize([
                "--model_name_or_path", str(workdir / "model"), "--data_dir", str(release),
                "--cache_dir", str(workdir / "cache"), "--output_dir", str(workdir / method), "--method", method,
                "--seed", str(args.seed),
            ])

    findings = results[METHODS[0]]["findings"]
    learned = [name for name in findings if metrics[f"test_roc_auc_{name}"] >= LEARNED_AUC]
    thresholds = [f"{value:g}" for value in results[METHODS[0]]["iobb_thresholds"]]
    if not learned:
        print(f"No finding reached a test AUC of {LEARNED_AUC}: train longer (--epochs) or on more images.")
        return {"learned": learned, "metrics": metrics, "results": results}
    grid = args.image_size // 8
    lines = [f"## Localization by method: demo ViT ({grid} x {grid} patch grid), {args.num_patients * 3} synthetic "
             f"images at {args.image_size} px, seed {args.seed}", "",
             "Test AUC and boxes per finding: " + ", ".join(
                 f"{name} {metrics[f'test_roc_auc_{name}']:.3f} ({findings[name]['num_boxes']})" for name in findings),
             f"Learned (test AUC >= {LEARNED_AUC}): {', '.join(learned)}; "
             f"{sum(findings[name]['num_boxes'] for name in learned)} boxes", "",
             "| method | " + " | ".join(f"acc. T(IoBB)={t}" for t in thresholds) + " | random, acc. at 0.1 |",
             "| --- |" + " ---: |" * (len(thresholds) + 1)]
    for method, summary in results.items():
        accuracy = [f"{pooled(summary['findings'], learned, t):.3f}" for t in thresholds]
        random = pooled(summary["random_lung_field_baseline"]["findings"], learned, "0.1")
        lines.append(f"| {method} | " + " | ".join(accuracy) + f" | {random:.3f} |")
    lines += ["", "Per finding, accuracy at T(IoBB)=0.1 (random baseline):"]
    for method, summary in results.items():
        lines.append(f"- {method}: " + ", ".join(
            f"{name} {summary['findings'][name]['by_threshold']['0.1']['accuracy']:.2f} "
            f"({summary['random_lung_field_baseline']['findings'][name]['by_threshold']['0.1']['accuracy']:.2f})"
            for name in learned))
    print("\n".join(lines))
    return {"learned": learned, "metrics": metrics, "results": results}


if __name__ == "__main__":
    main()
