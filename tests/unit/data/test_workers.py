"""The loader workers' set-up: Lightning's seeding when asked for, then the niceness increment."""

from __future__ import annotations

import os

import pytest

from epspp.data import workers
from epspp.data.workers import CPU_WORKER_NICE, WorkerInit


def _record(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    monkeypatch.setattr(
        workers, "pl_worker_init_function", lambda worker_id, rank: calls.append(("seed", worker_id, rank))
    )
    monkeypatch.setattr(os, "nice", lambda increment: calls.append(("nice", increment)))
    return calls


def test_seeds_the_worker_with_its_rank_then_lowers_its_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record(monkeypatch)
    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    WorkerInit(nice="19", rank=3)(2)  # type: ignore[arg-type]  (a config value may come as a string)
    assert calls == [("seed", 2, 3), ("nice", 19)]
    assert CPU_WORKER_NICE == 19


def test_no_seeding_without_seed_everything_and_no_nice_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record(monkeypatch)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    WorkerInit(nice=0)(0)
    monkeypatch.setenv("PL_SEED_WORKERS", "0")
    WorkerInit(nice=-5)(1)  # a negative increment is never applied (it needs privileges)
    assert calls == []


def test_a_refused_nice_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(increment: int) -> int:
        raise PermissionError("not permitted")

    monkeypatch.setattr(os, "nice", refuse)
    WorkerInit(nice=5)(0)
