"""One source of randomness: the seed. Same seed -> identical weights (CPU, same threads), with loader
workers and ``--trainer.deterministic true``; another seed -> other weights.  (Stage 2 and stage 3 run with
``--trainer.deterministic true`` in test_pseudo_masks.py and test_segmentation_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import torch
from fixtures.cli import SCRATCH_EPSPP, TINY_FIT, start_epspp


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_same_seed_same_weights_with_workers(synthetic_root: Path, tmp_path: Path) -> None:
    # EPS++ (random crops, flips, jitter, PAMR) with 2 loader workers and deterministic kernels
    fit = [
        *TINY_FIT[:4],
        *TINY_FIT[6:],
        "--data.num_workers",
        "2",
        "--trainer.max_steps",
        "3",
        "--trainer.deterministic",
        "true",
        "--trainer.logger",
        "false",
        "--trainer.limit_val_batches",
        "0",
        "--data.root",
        synthetic_root,
    ]
    started = [
        start_epspp(
            [
                "fit",
                "--config",
                SCRATCH_EPSPP,
                "--seed_everything",
                seed,
                "--trainer.default_root_dir",
                tmp_path / name,
                *fit,
            ],
            cwd=tmp_path,
        )
        for name, seed in (("a", 5), ("b", 5), ("c", 6))
    ]  # at once: they share the cores
    for run in started:
        run.wait()
    same, other = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert max_difference(same, other) == 0.0
    assert max_difference(same, weights(tmp_path / "c")) > 1e-4
