"""Set-up of the DataLoader workers: Lightning's worker seeding, then a lower CPU priority when asked.

When the model runs on the CPU, the loader workers and the training step compete for the same cores.
PyTorch's intra-op threads then lose their time slices to the workers in the middle of parallel regions
and wait for one another: on a 2-core machine a demo run with 2 workers at normal priority was ~55%
slower than with free batches, ~15% with the workers at niceness 19 (``BENCHMARKS.md``, benchmark 4).
At low priority the workers use the CPU time the step leaves idle and still run whenever the step
waits for a batch.
"""

from __future__ import annotations

import os

from lightning_fabric.utilities.seed import pl_worker_init_function

#: niceness of the loader workers when the model runs on the CPU (``EPSDataModule(worker_nice=None)``)
CPU_WORKER_NICE = 19


class WorkerInit:
    """``worker_init_fn``: Lightning's seeding (as it adds it itself when ``seed_everything(workers=True)``
    was called and a loader has no ``worker_init_fn``), then ``os.nice(nice)`` in the worker.

    Args:
        nice: niceness increment of every worker (0 = unchanged).
        rank: global rank of the process, for the worker seeds.
    """

    def __init__(self, nice: int, rank: int = 0) -> None:
        self.nice = int(nice)
        self.rank = int(rank)

    def __call__(self, worker_id: int) -> None:
        """Seed the worker (as Lightning's) and lower its priority by ``nice``."""
        if int(os.environ.get("PL_SEED_WORKERS", 0)):
            pl_worker_init_function(worker_id, rank=self.rank)
        if self.nice > 0:
            try:
                os.nice(self.nice)
            except (AttributeError, OSError):  # no os.nice (Windows), or not permitted
                pass
