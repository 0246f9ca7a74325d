"""benchmarks/gpu/step_timer.py: the seconds per batch of the GPU check (issue 35 item 5)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]


def _timer_class():
    spec = importlib.util.spec_from_file_location("step_timer", REPO / "benchmarks" / "gpu" / "step_timer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StepTimer


@pytest.mark.parametrize(
    ("warmup", "expected"),
    [
        (2, [2.0, 3.0, 4.0]),  # from the end of batch 2 (t=1): 3-1, 6-3, 10-6
        (0, [1.0, 2.0, 3.0, 4.0]),  # from the end of the first batch
        (4, [4.0]),
        (5, []),  # nothing timed
    ],
)
def test_seconds_per_batch_after_the_warmup(tmp_path: Path, warmup: int, expected: list[float]) -> None:
    timer = _timer_class()(out=str(tmp_path / "t.json"), warmup=warmup)
    timer.ends = [0.0, 1.0, 3.0, 6.0, 10.0]  # the ends of five batches
    timer.losses = [2.5, 1.5]
    timer.on_train_end(None, SimpleNamespace(device=torch.device("cpu")))
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["batches"] == 5 and result["timed"] == len(expected)
    assert result["seconds_per_batch"] == (sum(expected) / len(expected) if expected else None)
    assert result["min_seconds"] == (min(expected) if expected else None)
    assert result["max_seconds"] == (max(expected) if expected else None)
    assert (result["first_loss"], result["last_loss"], result["loop"]) == (2.5, 1.5, "train")
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no .partial left
