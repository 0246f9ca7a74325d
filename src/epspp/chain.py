"""The stage chain: which ``epspp`` commands a pipeline runs, in which folders, and running them.

Every entry point that chains stages builds its stages here and runs them with ``Runner``: ``epspp demo``
(``epspp.demo``), ``epspp run``, the study runner (``epspp.study.runner``) and ``epspp chain`` (the
Makefile's ``voc-wsss|voc-ssss|coco-wsss`` and ``scripts/slurm/``, see ``epspp.cli.chain``).  A stage runs as
the user would run it (``epspp fit|predict|prepare|saliency ...`` in a subprocess), so the files on disk are
the hand-over between stages.

The runner's rules:

* a stage that finished writes ``<folder>/stage.json``: its command, its wall time, an id, and the ids of
  its input stages' markers when it ran;
* a rerun skips it while its command is the same and no input stage ran again since;
* otherwise it runs again from scratch, its old folder moved to ``<folder>.previous`` (then ``.previous-2``,
  ...): nothing is deleted;
* a stage without a marker (never run, or killed) runs in its folder as it is: a fit (``resume``) continues
  from its newest checkpoint (``--ckpt_path`` added when there is one), a pseudo-mask prediction skips the
  masks it wrote;
* the process layout (``Processes``: devices, nodes, the batch recipe per process) and the resumed
  checkpoint are added when the stage starts and are not part of the command compared, so a resubmission on
  other GPUs resumes rather than starting over.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import yaml

from epspp.errors import EPSError
from epspp.files import write_json
from epspp.runs.progress import format_duration, read_progress

MARKER = "stage.json"
#: the subcommands that run a Lightning Trainer: they take the process layout and the launcher
TRAINER_COMMANDS = ("fit", "validate", "test", "predict")


class StageError(EPSError):
    """A stage of a chain failed or cannot start; the message names the stage and its log or command."""


@dataclass(frozen=True)
class RunLayout:
    """The folders of one run directory: a stage's outputs live in the folder named after it."""

    root: Path

    @property
    def dataset(self) -> Path:
        """A dataset the chain prepares itself (``epspp prepare ...``)."""
        return self.root / "dataset"

    @property
    def saliency(self) -> Path:
        """Saliency maps the chain makes itself (``epspp saliency``)."""
        return self.root / "saliency"

    @property
    def localization(self) -> Path:
        """Stage 1's fit (``--trainer.default_root_dir``): checkpoints, logs, progress."""
        return self.root / "localization"

    @property
    def pseudo_masks(self) -> Path:
        """Stage 2: the train split's pseudo-masks (what stage 3 learns from)."""
        return self.root / "pseudo_masks"

    @property
    def val_masks(self) -> Path:
        """The val split's pseudo-masks (where a background threshold is chosen)."""
        return self.root / "val_masks"

    def segmentation(self, variant: str) -> Path:
        """Stage 3's fit of ``variant`` (wsss, ssss, ...)."""
        return self.root / f"segmentation_{variant}"

    def test(self, variant: str) -> Path:
        """The test-split prediction of stage 3's ``variant``."""
        return self.segmentation(variant) / "test"

    @property
    def predictions(self) -> Path:
        """Masks of a folder of new images (``--data.predict_image_dir``)."""
        return self.root / "predictions"

    @property
    def report(self) -> Path:
        """The run's report."""
        return self.root / "report"


def last_checkpoint(folder: Path) -> Path:
    """The ``last.ckpt`` a fit into ``folder`` writes."""
    return folder / "checkpoints" / "last.ckpt"


@dataclass(frozen=True)
class Stage:
    """One ``epspp`` command and the folder it writes.

    ``args`` and ``overrides`` are the command compared between runs (``overrides`` come last, after the
    process layout, so they override it); ``inputs`` are the folders of the stages whose outputs it reads
    (it runs again when one of them ran again); ``resume``: a fit that continues from the folder's newest
    checkpoint; ``max_steps``: its step budget for the whole run's ETA (None: read from ``--trainer.max_steps``
    or the configs).
    """

    name: str
    folder: Path
    args: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()
    resume: bool = False
    max_steps: int | None = None

    @property
    def subcommand(self) -> str:
        """``fit``, ``predict``, ``prepare``, ..."""
        return self.args[0]

    @property
    def command(self) -> list[str]:
        """The command recorded in ``stage.json`` and compared on a rerun: ``["epspp", *args, *overrides]``."""
        return ["epspp", *self.args, *self.overrides]

    @property
    def configs(self) -> list[Path]:
        """The ``--config`` files of the command, in order."""
        words = [*self.args, *self.overrides]
        return [Path(value) for value in _flag_values(words, ("--config", "-c"), "--config=")]

    def step_budget(self) -> int | None:
        """The fit's ``trainer.max_steps``: ``max_steps``, else the last ``--trainer.max_steps`` given, else the
        last config that sets it; None for other commands or when unknown (or -1: unlimited)."""
        if self.subcommand != "fit":
            return None
        if self.max_steps is not None:
            return self.max_steps
        words = [*self.args, *self.overrides]
        given = _flag_values(words, ("--trainer.max_steps",), "--trainer.max_steps=")
        if not given:
            for config in self.configs:
                try:
                    value = ((yaml.safe_load(config.read_text()) or {}).get("trainer") or {}).get("max_steps")
                except (OSError, yaml.YAMLError, AttributeError):
                    continue
                given += [str(value)] if value is not None else []
        try:
            budget = int(given[-1]) if given else None
        except ValueError:
            return None
        return budget if budget is not None and budget > 0 else None


def fit_stage(
    name: str,
    folder: Path,
    configs: Sequence[Path],
    root: Path,
    *,
    extra: Sequence[str] = (),
    init: Sequence[str] = (),
    overrides: Sequence[str] = (),
    inputs: Sequence[Path] = (),
    max_steps: int | None = None,
) -> Stage:
    """``epspp fit --config C.. --data.root ROOT EXTRA --trainer.default_root_dir FOLDER INIT`` + ``OVERRIDES``;
    it resumes from the folder's newest checkpoint when it was interrupted."""
    args = [
        "fit",
        *_configs(configs),
        "--data.root",
        str(root),
        *extra,
        "--trainer.default_root_dir",
        str(folder),
        *init,
    ]
    return Stage(name, folder, tuple(args), tuple(overrides), tuple(inputs), resume=True, max_steps=max_steps)


def predict_stage(
    name: str,
    folder: Path,
    configs: Sequence[Path],
    root: Path,
    checkpoint: Path,
    *,
    extra: Sequence[str] = (),
    overrides: Sequence[str] = (),
    inputs: Sequence[Path] = (),
    root_dir: bool = False,
) -> Stage:
    """``epspp predict --config C.. --data.root ROOT EXTRA --ckpt_path CKPT [--trainer.default_root_dir FOLDER]
    --pseudo_masks.output_dir FOLDER`` + ``OVERRIDES``: the masks (and ``manifest.json``) go to ``folder``."""
    args = ["predict", *_configs(configs), "--data.root", str(root), *extra, "--ckpt_path", str(checkpoint)]
    args += ["--trainer.default_root_dir", str(folder)] if root_dir else []
    args += ["--pseudo_masks.output_dir", str(folder)]
    return Stage(name, folder, tuple(args), tuple(overrides), tuple(inputs))


def _flag_values(words: Sequence[str], flags: tuple[str, ...], joined: str) -> list[str]:
    """The values of ``FLAG VALUE`` (a flag of ``flags``) and ``JOINED=VALUE`` in ``words``, in the order given (the
    CLI's last one wins, whichever way each is written)."""
    values = []
    for index, word in enumerate(words):
        if word in flags and index + 1 < len(words):
            values.append(words[index + 1])
        elif word.startswith(joined):
            values.append(word[len(joined) :])
    return values


def _configs(configs: Sequence[Path]) -> list[str]:
    return [word for config in configs for word in ("--config", str(config))]


@dataclass(frozen=True)
class Processes:
    """How many processes a Trainer stage runs on: ``--trainer.devices/num_nodes/strategy`` for every Trainer
    stage, ``--trainer.sync_batchnorm`` (when set) and the config's batch recipe split over the processes
    (``epspp batch-args``, docs/multi_gpu.md) for every fit."""

    devices: int = 1
    num_nodes: int = 1
    strategy: str | None = None  # None: auto for one process, else ddp
    sync_batchnorm: bool | None = None  # None: the config's

    @property
    def count(self) -> int:
        """The number of processes: devices x nodes."""
        return self.devices * self.num_nodes

    def trainer_args(self, fit: bool) -> list[str]:
        """The Trainer flags of the layout."""
        strategy = self.strategy or ("auto" if self.count == 1 else "ddp")
        args = [
            "--trainer.devices",
            str(self.devices),
            "--trainer.num_nodes",
            str(self.num_nodes),
            "--trainer.strategy",
            strategy,
        ]
        if fit and self.sync_batchnorm is not None:
            args += ["--trainer.sync_batchnorm", str(self.sync_batchnorm).lower()]
        return args


def resume_checkpoint(folder: Path) -> str | None:
    """``--ckpt_path`` of a fit that continues in ``folder``: the newest of SLURM's ``hpc_ckpt_N.ckpt`` (written on
    a requeue signal) and ``checkpoints/last.ckpt``, as a path when it is an ``hpc_ckpt``, else ``last``; None when
    there is neither (a fresh start: no flag, and no Lightning warning about a missing last checkpoint)."""
    found = [path for path in (*folder.glob("hpc_ckpt_*.ckpt"), last_checkpoint(folder)) if path.is_file()]
    if not found:
        return None
    newest = max(found, key=lambda path: path.stat().st_mtime)
    return str(newest) if newest.name.startswith("hpc_ckpt_") else "last"


def whole_run_eta(progress: Mapping, rate: float | None, budgets: Sequence[int | None]) -> tuple[float | None, int]:
    """Seconds left in the whole run, and the number of stages to come that are not counted.

    ``progress``: the running fit's ``progress.json`` (its ``eta_s``, else ``(max_steps - step) /
    steps_per_s``); ``rate``: the steps per second measured in the run's first fit, at which the fits to
    come (``budgets``: their step budgets; None for a stage without one, e.g. a prediction) are estimated.
    None when the running fit gives no estimate yet.
    """
    left = progress.get("eta_s")
    if left is None:
        speed = progress.get("steps_per_s") or 0
        step, total = progress.get("step"), progress.get("max_steps")
        if speed <= 0 or step is None or total is None:
            return None, 0
        left = max(0, total - step) / speed
    rate = rate or progress.get("steps_per_s") or 0
    counted = [budget for budget in budgets if budget is not None]
    if counted and rate <= 0:
        return None, 0
    return float(left) + sum(budget / rate for budget in counted), len(budgets) - len(counted)


def move_aside(folder: Path) -> Path:
    """Rename ``folder`` to the first free ``<folder>.previous``, ``.previous-2``, ...; the new path."""
    target, number = folder.with_name(f"{folder.name}.previous"), 1
    while target.exists():
        number += 1
        target = folder.with_name(f"{folder.name}.previous-{number}")
    os.rename(folder, target)
    return target


#: set by ``run_command`` in a stage's environment: the runner's pid, so that the stage ends with it
PARENT_PID_ENV = "EPSPP_CHAIN_PARENT_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: how long an interrupted runner waits for its stage to end after SIGTERM, before SIGKILL
END_WAIT_S = 30.0


def run_command(
    argv: Sequence[str], log: Path | None, env: Mapping[str, str] | None, poll: Callable[[], None], poll_s: float
) -> int:
    """Run ``argv`` to its end, its output appended to ``log`` (or to this process's output when None), calling
    ``poll`` every ``poll_s`` seconds meanwhile; its exit code.

    The stage never outlives the runner: interrupted (KeyboardInterrupt, or SIGTERM under ``ending_on_signals``),
    the runner terminates the stage, waits for it (``END_WAIT_S``, then SIGKILL) and raises again; killed
    (SIGKILL), its stage gets SIGTERM from the kernel (``end_with_parent``, which an epspp stage calls at start-up
    from ``PARENT_PID_ENV``).
    """
    handle: TextIO | None = open(log, "a") if log is not None else None  # noqa: SIM115 (closed below)
    environment = dict(os.environ if env is None else env) | {PARENT_PID_ENV: str(os.getpid())}
    try:
        process = subprocess.Popen(
            list(argv), stdout=handle, stderr=subprocess.STDOUT if handle else None, env=environment
        )
        try:
            while True:
                try:
                    return process.wait(timeout=poll_s)
                except subprocess.TimeoutExpired:
                    poll()
        except BaseException:
            end_process(process)
            raise
    finally:
        if handle is not None:
            handle.close()


def end_process(process: subprocess.Popen) -> None:
    """SIGTERM to ``process``, then wait for it (SIGKILL after ``END_WAIT_S``)."""
    process.terminate()
    try:
        process.wait(timeout=END_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def end_with_parent() -> None:
    """In a stage that a runner started (``PARENT_PID_ENV`` names it): ask the kernel for SIGTERM when the runner
    dies (Linux ``PR_SET_PDEATHSIG``), so a ``kill -9`` of ``epspp demo`` leaves no orphan stage writing; if the
    runner is gone already, end now.  The variable is removed, so the stage's own children are not concerned; a
    stage under a launcher (its parent is ``srun``, not the runner) is left to the launcher."""
    expected = os.environ.pop(PARENT_PID_ENV, None)
    if expected is None or not sys.platform.startswith("linux"):
        return
    if os.getppid() != int(expected):
        if os.getppid() == 1:  # the runner died before this line: orphaned already
            raise SystemExit(143)
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(expected):  # it died between the check and the request
        raise SystemExit(143)


@contextlib.contextmanager
def ending_on_signals() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise ``SystemExit(128 + signal)`` in the main thread while the chain runs, so that
    ``run_command`` ends the running stage and waits for it (SIGINT raises KeyboardInterrupt already); elsewhere
    (another thread) nothing changes."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(number: int, _frame: object) -> None:
        raise SystemExit(128 + number)

    saved = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


@dataclass
class Runner:
    """Runs stages (see the module's rules) and says what it does, prefixed ``[tag]``.

    ``executable``: the ``epspp`` command (default: this Python's ``-m epspp``); ``launcher``: a prefix of
    every Trainer stage (e.g. ``("srun",)``); ``processes``: the process layout of every Trainer stage (None:
    the configs'); ``log_name``: each stage's output goes to ``<folder>/<log_name>`` instead of the terminal;
    ``env``: the stages' environment; ``quiet``: print nothing (errors still raise); ``poll_s``: how often a
    running fit's ``progress.json`` is read for the whole run's ETA.  Thread-safe: stages of different folders
    may run from several threads (the study).
    """

    tag: str = "chain"
    executable: tuple[str, ...] = (sys.executable, "-m", "epspp")
    launcher: tuple[str, ...] = ()
    processes: Processes | None = None
    log_name: str | None = None
    env: Mapping[str, str] | None = None
    quiet: bool = False
    poll_s: float = 30.0
    out: TextIO | None = None  # where the runner's lines go (None: sys.stdout when printing)
    _recipes: dict[Stage, list[str]] = field(default_factory=dict, repr=False)
    _ran: set[Path] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---------------------------------------------------------------- commands
    def argv(self, stage: Stage, executable: Sequence[str] | None = None, later: bool = False) -> list[str]:
        """The command line that runs ``stage`` now (``later``: whenever it is run, as print mode writes it, so a
        fit always resumes with ``--ckpt_path last``): launcher, executable, args, the resumed checkpoint, the
        process layout, overrides."""
        trainer = stage.subcommand in TRAINER_COMMANDS
        words = [*(self.launcher if trainer else ()), *(executable or self.executable), *stage.args]
        checkpoint = resume_checkpoint(stage.folder) if stage.resume else None
        if stage.resume and (checkpoint or later):
            words += ["--ckpt_path", checkpoint or "last"]
        if trainer and self.processes is not None:
            words += self.processes.trainer_args(stage.subcommand == "fit") + self._recipe(stage)
        return words + list(stage.overrides)

    def shown(self, stage: Stage, later: bool = False) -> str:
        """``argv`` as the runner prints it: shell-quoted, the default executable written ``epspp``."""
        default = self.executable == (sys.executable, "-m", "epspp")
        return shlex.join(self.argv(stage, ("epspp",) if default else None, later))

    def print_commands(self, stages: Sequence[Stage], file: TextIO | None = None) -> None:
        """Print mode: each stage's command line (shell-quoted, one a line) instead of running it."""
        for stage in stages:
            print(shlex.join(self.argv(stage, later=True)), file=file or sys.stdout, flush=True)

    def _recipe(self, stage: Stage) -> list[str]:
        """A fit's batch recipe over ``processes`` (from its first config), said once on stderr as batch-args does."""
        if stage.subcommand != "fit" or self.processes is None or not stage.configs:
            return []
        with self._lock:
            if stage not in self._recipes:
                from epspp.batch_scaling import config_recipe

                scaled, message = config_recipe(stage.configs[0], self.processes.count)
                print(message, file=sys.stderr, flush=True)
                self._recipes[stage] = scaled.args()
            return self._recipes[stage]

    # ----------------------------------------------------------------- running
    def run(self, stages: Sequence[Stage]) -> dict[str, dict]:
        """Run ``stages`` in order (each one's inputs before it); their markers by stage name, each with ``ran``
        (whether it ran now).  Once the first fit has run a while, the whole run's ETA is printed."""
        names = [stage.name for stage in stages]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise StageError(
                f"stage names must differ, got {', '.join(twice)} more than once: name each stage after its folder"
            )
        for stage in stages:  # every config is read (and every recipe said) before anything runs
            self._recipe(stage)
        todo = self.plan(stages)
        self._say(
            f"{len(stages)} stages, {sum(todo)} to run"
            + (f", {len(stages) - sum(todo)} done before" if sum(todo) < len(stages) else "")
        )
        records: dict[str, dict] = {}
        eta = _Eta()
        with ending_on_signals():  # a killed chain ends its running stage first
            for index, stage in enumerate(stages):
                to_come = [
                    s.step_budget() for s, run in zip(stages[index + 1 :], todo[index + 1 :], strict=True) if run
                ]
                records[stage.name] = self.run_stage(stage, functools.partial(self._eta, eta, stage, to_come))
        return records

    def plan(self, stages: Sequence[Stage]) -> list[bool]:
        """Which of ``stages`` a ``run`` would run: those not finished or out of date, and those after an input
        that runs."""
        todo: list[bool] = []
        running: set[Path] = set()
        for stage in stages:
            marker = _read_marker(stage.folder)
            runs = marker is None or self.why_again(stage, marker) is not None or bool(running & set(stage.inputs))
            running |= {stage.folder} if runs else set()
            todo.append(runs)
        return todo

    def why_again(self, stage: Stage, marker: Mapping) -> str | None:
        """Why a finished stage (its ``marker``) must run again, or None when it is up to date."""
        recorded = marker.get("command")
        if stage.resume and isinstance(recorded, list):  # an older epspp recorded the fit's --ckpt_path last
            recorded = _without_checkpoint(recorded)
        if recorded != stage.command:
            return "its command changed"
        recorded = marker.get("inputs")
        for folder in stage.inputs:
            if recorded is None:  # a marker of an older epspp: only a rerun in this process is known
                with self._lock:
                    if folder in self._ran:
                        return "its input stage ran again"
            elif recorded.get(str(folder)) != (_read_marker(folder) or {}).get("id"):
                return "its input stage ran again"
        return None

    def run_stage(self, stage: Stage, poll: Callable[[], None] | None = None) -> dict:
        """Run one stage unless it is finished and up to date; its marker, with ``ran``."""
        marker_path = stage.folder / MARKER
        marker = _read_marker(stage.folder)
        if marker is not None:
            why = self.why_again(stage, marker)
            if why is None:
                self._say(f"{stage.name}: done before, skipping ({marker_path})")
                return marker | {"ran": False}
            previous = move_aside(stage.folder)
            self._say(f"{stage.name}: {why}; running it again (the old outputs are in {previous})")
        created = not stage.folder.exists()
        stage.folder.mkdir(parents=True, exist_ok=True)
        argv = self.argv(stage)
        self._say(f"{stage.name}: {self.shown(stage)}")
        log = stage.folder / self.log_name if self.log_name else None
        start = time.perf_counter()
        code = run_command(argv, log, self.env, poll or (lambda: None), self.poll_s)
        seconds = time.perf_counter() - start
        if code != 0:
            if created and not any(stage.folder.iterdir()):
                stage.folder.rmdir()  # (made here, left empty: it must not block a later run)
            where = f"its log is {log}" if log else f"command: {shlex.join(argv)}"
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:]) if log else ""
            raise StageError(f"{stage.name} failed (exit {code}); {where}" + (f": {tail}" if tail else ""))
        record = {
            "stage": stage.name,
            "command": stage.command,
            "argv": argv,
            "wall_time_s": round(seconds, 1),
            "id": uuid.uuid4().hex,
            "inputs": {str(folder): (_read_marker(folder) or {}).get("id") for folder in stage.inputs},
        }
        write_json(marker_path, record)
        with self._lock:
            self._ran.add(stage.folder)
        self._say(f"{stage.name}: finished in {format_duration(seconds)}; its files are in {stage.folder}")
        return record | {"ran": True}

    def _eta(self, eta: _Eta, stage: Stage, to_come: list[int | None]) -> None:
        """Poll of a running stage: the first time its ``progress.json`` gives a rate, print the whole run's ETA."""
        if stage.subcommand != "fit" or stage in eta.said:
            return
        progress = read_progress(stage.folder)
        if not progress or not progress.get("steps_per_s"):
            return
        if eta.rate is None:
            eta.rate, eta.first = float(progress["steps_per_s"]), stage.name
        seconds, unknown = whole_run_eta(progress, eta.rate, to_come)
        if seconds is None:
            return
        eta.said.add(stage)
        fits = sum(budget is not None for budget in to_come)
        basis = f"{fits} fit(s) to come at {eta.first}'s {eta.rate:.2f} steps/s" if fits else "this fit's own rate"
        uncounted = f"; {unknown} stage(s) without a step budget not counted" if unknown else ""
        self._say(f"whole run: about {format_duration(seconds)} left (an estimate: {basis}{uncounted})")

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(f"[{self.tag}] {line}", file=self.out or sys.stdout, flush=True)


@dataclass
class _Eta:
    """The whole run's ETA state within one ``Runner.run``: the first fit's rate and the stages already told."""

    rate: float | None = None
    first: str = ""
    said: set[Stage] = field(default_factory=set)


def _without_checkpoint(command: list) -> list:
    """``command`` without its ``--ckpt_path X`` (or ``--ckpt_path=X``)."""
    kept: list = []
    skip = False
    for word in command:
        if skip or str(word).startswith("--ckpt_path="):
            skip = False
            continue
        skip = word == "--ckpt_path"
        kept += [] if skip else [word]
    return kept


def _read_marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None
