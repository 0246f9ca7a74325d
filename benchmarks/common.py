"""Shared helpers of the benchmarks: machine description, load snapshots, side-by-side timing, markdown.

Every benchmark script can run alone (``python benchmarks/bench_x.py``) and prints its markdown section;
``run_all.py`` runs them in fresh subprocesses and assembles ``BENCHMARKS.md``. A script writes its
section with ``--md-out FILE`` and a JSON summary of its goals with ``--json-out FILE``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


# ----------------------------------------------------------------------------- machine and load
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            info = dict(line.split(":", 1) for line in handle)
        return int(info["MemTotal"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        return None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def load_snapshot(window: float = 0.5) -> dict:
    """Load averages and the share of the CPUs busy with *other* work over ``window`` s (we sleep meanwhile)."""
    snap: dict = {"time": time.strftime("%H:%M:%S")}
    try:
        snap["loadavg"] = [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        snap["loadavg"] = None
    first = _cpu_times()
    time.sleep(window)
    second = _cpu_times()
    if first and second and second[1] > first[1]:
        snap["busy"] = (second[0] - first[0]) / (second[1] - first[1])
    else:
        snap["busy"] = None
    return snap


class CpuMeter:
    """Share of all CPUs used by *other* processes between construction and ``other()``.

    /proc/stat's busy time of all CPUs minus the CPU time of this process and of its reaped children
    (DataLoader workers count once they have exited), over the elapsed CPU time of all CPUs.
    """

    def __init__(self) -> None:
        self.clock = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start = _cpu_times()
        self.own = self._own()

    @staticmethod
    def _own() -> float:
        import resource

        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def other(self) -> float | None:
        end = _cpu_times()
        if not self.start or not end or end[1] <= self.start[1]:
            return None
        own = (self._own() - self.own) * self.clock
        return min(1.0, max(0.0, (end[0] - self.start[0] - own) / (end[1] - self.start[1])))


def format_other(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.0f}%"


def format_load(snap: dict) -> str:
    avg = snap.get("loadavg")
    busy = snap.get("busy")
    parts = [snap.get("time", "")]
    if avg:
        parts.append("load " + " / ".join(f"{v:.2f}" for v in avg))
    if busy is not None:
        parts.append(f"CPUs {100 * busy:.0f}% busy with other work")
    return ", ".join(p for p in parts if p)


def wait_for_quiet(max_wait: float = 0.0, busy_below: float = 0.25) -> dict:
    """Wait up to ``max_wait`` s for the other processes to leave the CPUs mostly idle; return the snapshot."""
    deadline = time.monotonic() + max_wait
    snap = load_snapshot()
    while snap["busy"] is not None and snap["busy"] >= busy_below and time.monotonic() < deadline:
        time.sleep(2.0)
        snap = load_snapshot()
    return snap


def machine_info(device: str = "cpu") -> dict:
    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "parallel_backend": torch.__config__.parallel_info().splitlines()[-1].strip(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# ----------------------------------------------------------------------------------- timing
def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def side_by_side(
    fns: dict[str, Callable[[], object]],
    rounds: int | dict[str, int],
    device: torch.device | str = "cpu",
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Time every function ``rounds`` times, interleaved (order rotated every round), after ``warmup`` calls.

    Interleaving makes the ratios robust to load that changes during the run (another job starting):
    every implementation sees the same conditions on average. ``rounds`` may differ per function (a slow
    baseline gets fewer); a function then drops out of the rotation when it has its count.
    """
    counts = {name: rounds if isinstance(rounds, int) else rounds[name] for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup if counts[name] > 0 else 0):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(max(counts.values(), default=0)):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if len(times[name]) >= counts[name]:
                continue
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratios(baseline: Sequence[float], ours: Sequence[float]) -> str:
    """Each round's ratio baseline / ours, and their geometric mean with a 95% t interval (over the rounds, on the
    log ratios; one round: the ratio alone)."""
    from scipy import stats

    logs = [math.log(a / b) for a, b in zip(baseline, ours, strict=True)]
    each = ", ".join(f"{math.exp(v):.3f}" for v in logs)
    if len(logs) < 2:
        return each
    mean = statistics.mean(logs)
    half = float(stats.t.ppf(0.975, len(logs) - 1)) * statistics.stdev(logs) / math.sqrt(len(logs))
    return f"{each}; geometric mean {math.exp(mean):.3f} [{math.exp(mean - half):.3f}, {math.exp(mean + half):.3f}]"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """min-max of the repeats, for the tables."""
    if not values:
        return ""
    return f"{min(values) * 1e3:.1f}-{max(values) * 1e3:.1f}"


def cpu_tensor_peak(fn: Callable[[], object]) -> tuple[object, int]:
    """Run ``fn`` under the profiler; return (its result, peak bytes of CPU tensor memory it allocated).

    The CPU analogue of ``torch.cuda.max_memory_allocated() - memory_allocated()``: the allocation and
    free events of the c10 CPU allocator are replayed in time order and the highest running total kept.
    Memory allocated before the call (inputs) is not counted; the output is.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return result, peak


def device_peak(fn: Callable[[], object], device: torch.device | str) -> tuple[object, int]:
    """Peak bytes allocated by ``fn`` on ``device`` (CUDA: max_memory_allocated; CPU: ``cpu_tensor_peak``)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - before
    return cpu_tensor_peak(fn)


# --------------------------------------------------------------------------------- markdown
def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goal(name: str, target: str, measured: str, met: bool | None, note: str = "") -> dict:
    return {"name": name, "target": target, "measured": measured, "met": met, "note": note}


def goals_table(goals: Sequence[dict]) -> str:
    """The goal / target / measured / verdict table of a benchmark section."""
    return md_table(
        ["goal", "target", "measured", "verdict"],
        [[g["name"], g["target"], g["measured"], verdict(g["met"])] for g in goals],
    )


def verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "n/a"}[met]


# ----------------------------------------------------------------------------------- CLI
def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--md-out", type=Path, default=None, help="write the markdown section here")
    parser.add_argument("--json-out", type=Path, default=None, help="write the goals and figures here (JSON)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each case, wait up to this many seconds for the CPUs to be < 25%% busy",
    )
    return parser


def max_busy(*snaps: dict) -> float:
    """Highest share of the CPUs busy with other work among the snapshots (0 when unknown)."""
    return max((s.get("busy") or 0.0 for s in snaps), default=0.0)


def quiet_lightning() -> None:
    """Silence Lightning's info lines (GPU available, max_steps reached, tips) in the benchmark logs."""
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*predict_dataloader.*")


def setup_run(args: argparse.Namespace) -> torch.device:
    quiet_lightning()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    return device


def emit(args: argparse.Namespace, markdown: str, payload: dict) -> None:
    """Print the section and write it (and the JSON payload) where asked, atomically."""
    print(markdown)
    for path, text in ((args.md_out, markdown), (args.json_out, json.dumps(payload, indent=2, default=str))):
        if path is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
