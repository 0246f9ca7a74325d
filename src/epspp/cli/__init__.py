"""The ``epspp`` command: LightningCLI stages (fit/validate/test/predict) and tools (prepare, evaluate, ...).

Examples:
    epspp fit --config configs/demo/localization_eps++.yaml
    epspp predict --config configs/demo/pseudo_masks.yaml --ckpt_path runs/.../best.ckpt
    epspp prepare synthetic --root data/synthetic
    epspp evaluate --pred-dir runs/demo/eps++/pseudo_masks --root data/synthetic --split train
    epspp batch-args --config configs/voc/localization_eps++.yaml --devices 4   # DDP batch/lr overrides
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

from epspp import __version__

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# the commands outside LightningCLI: name -> (module of epspp.cli, its entry function taking the remaining arguments)
TOOLS = {
    "prepare": ("epspp.cli.prepare", "prepare_main"),
    "evaluate": ("epspp.cli.evaluate", "evaluate_main"),
    "check": ("epspp.cli.check", "check_main"),
    "render": ("epspp.cli.render", "render_main"),
    "demo": ("epspp.cli.demo", "demo_main"),
    "run": ("epspp.cli.run", "run_main"),
    "batch-args": ("epspp.cli.batch_args", "batch_args_main"),
    "chain": ("epspp.cli.chain", "chain_main"),
    "convert-weights": ("epspp.cli.convert", "convert_main"),
    "study": ("epspp.cli.study", "study_main"),
    "saliency": ("epspp.cli.saliency", "saliency_main"),
    "configs": ("epspp.cli.configs", "configs_main"),
}
OVERVIEW = """usage: epspp COMMAND [ARGS]   (epspp COMMAND --help for the options of one command)

EPS++ (TPAMI 2023) as a PyTorch Lightning pipeline: localization -> pseudo-masks -> segmentation.

stages (Lightning's CLI: every constructor argument is a YAML key and a flag):
  fit          train a stage       epspp fit --config configs/demo/localization_eps++.yaml
  validate     score a checkpoint  epspp validate --config configs/demo/segmentation_wsss.yaml --ckpt_path CKPT
  test         score on the test split
  predict      write masks         epspp predict --config configs/demo/pseudo_masks.yaml --ckpt_path CKPT

tools:
  prepare      build a dataset in the VOC layout: epspp prepare synthetic|voc|coco|folder ...
  saliency     a salient-object detector's grey map per image (rembg): epspp saliency --images DIR --out DIR
  check        check every file of a dataset (decodes, sizes, mask values): epspp check --data.root ROOT
  evaluate     mIoU of a folder of PNG masks against a dataset's ground truth
  render       a grid PNG of image | saliency | mask overlay: epspp render --pred-dir OUT --root ROOT|--images DIR
  run          your own photos to masks: epspp run --images DIR --labels FILE --saliency DIR --out DIR
  demo         the whole pipeline on the synthetic dataset (what `make demo` runs)
  chain        the papers' chain on VOC/COCO, resumable (what make voc-wsss runs): epspp chain --dataset voc ...
  batch-args   per-GPU batch size and learning rate of a config's recipe on N GPUs
  convert-weights  ResNet-38d's MXNet ImageNet .params -> a PyTorch .pth (no mxnet needed)
  study        controlled studies on synthetic data: epspp study saliency-errors|labeled-fraction|readings|confirm
  configs      the packaged configs (a --config NAME that is not a file is one): epspp configs list|copy NAME DEST

stage options of epspp (besides Lightning's):
--verbose      (or EPSPP_VERBOSE=1) show the libraries' tips, W&B banner, warnings and the model summary table
--start_over   fit: set an earlier fit's files aside (checkpoints.previous, ...) and start anew
--ckpt_path last   fit: continue the earlier fit in the run folder (Lightning's flag)

options: --help, --version"""

# Warnings of Lightning that a user of ``epspp`` cannot act on: (the subcommands they are hidden in, message).
INFERENCE = ("predict", "validate", "test")
UNACTIONABLE_WARNINGS = [
    (("fit", *INFERENCE), r"`isinstance\(treespec, LeafSpec\)` is deprecated"),  # Lightning internals, newer torch
    # inference from a training checkpoint: its ModelCheckpoint state is not needed to predict or score
    (INFERENCE, r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint"),
    (INFERENCE, r"The dirpath has changed from"),
    # a resumed pseudo-mask run with every mask already written (the writer says so itself)
    (("predict",), r"Total length of `DataLoader` across ranks is zero"),
    # a fit without a validation split (``data.val_split: null``, e.g. stage 3 on a val split without masks): the
    # data module's empty list of validation loaders (an empty training DataLoader still warns)
    (("fit",), r"Total length of `list` across ranks is zero"),
    # Lightning's advice for a training epoch shorter than log_every_n_steps: epspp's metrics are logged per step
    (("fit",), r"The number of training batches \(\d+\) is smaller than the logging interval"),
    # a resumed fit writes into its own checkpoint folder (a fit that is not resumed is checked by the write rule)
    (("fit",), r"Checkpoint directory .* exists and is not empty"),
    # torchmetrics, for a class absent from a small validation split (its AP is reported as such)
    (("fit", *INFERENCE), r"No positive samples found in target, recall is undefined"),
]


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``epspp`` console script (``args`` lets tests call it in-process); the run folders the
    command held are released when it ends (``epspp.runs.lock``)."""
    from epspp.runs.lock import held_folders, release_folders

    if args is None and "EPSPP_CHAIN_PARENT_PID" in os.environ:  # a stage of a chain: it ends with its runner
        from epspp.chain import end_with_parent

        end_with_parent()
    kept = held_folders()  # (a command that runs this one in its process keeps its own)
    try:
        run_command_line(args)
    finally:
        release_folders(kept)


def run_command_line(args: list[str] | None) -> None:
    """Run the command of ``args`` (None: ``sys.argv``); ends with SystemExit."""
    argv = list(sys.argv[1:] if args is None else args)
    command = argv[0] if argv else ""
    if command in ("-h", "--help"):
        print(OVERVIEW)
        raise SystemExit(0)
    if command == "--version":
        print(f"epspp {__version__}")
        raise SystemExit(0)
    if command not in LIGHTNING_COMMANDS and command not in TOOLS:
        problem = f"unknown command '{command}'" if command else "no command given"
        print(f"{OVERVIEW}\n\nepspp: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if command in TOOLS:
        raise SystemExit(run_tool(command, argv[1:]))
    if not os.environ.get("WANDB_MODE"):  # unset or empty: never ask for a login unless the user opts in
        os.environ["WANDB_MODE"] = "offline"
    if args is None:  # the console script's own process: large CPU activations reuse freed memory
        from epspp.cli.memory import keep_freed_memory

        keep_freed_memory()
    from epspp.cli.quiet import quiet_libraries, take_verbose_flag
    from epspp.runs.folder import START_OVER_FLAG, discard_empty_new_folders

    stripped = packaged_configs(take_verbose_flag(argv))
    start_over = command == "fit" and any(arg in (START_OVER_FLAG, "--start-over") for arg in stripped)
    stripped = [arg for arg in stripped if arg not in (START_OVER_FLAG, "--start-over")] if start_over else stripped
    if stripped != argv and args is None:  # the console script: LightningCLI reads sys.argv (DDP children too)
        sys.argv = [sys.argv[0], *stripped]
    with warnings.catch_warnings():  # an in-process caller gets its warning filters back
        quiet_libraries()
        quiet_unactionable_warnings(command)
        try:
            run_lightning_cli(stripped if args is not None else None, stripped[1:], start_over)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                discard_empty_new_folders()  # a failed command leaves no empty run folder that blocks a later one
            raise
        except BaseException:
            discard_empty_new_folders()
            raise


def run_tool(command: str, args: list[str]) -> int:
    """Run the tool ``command`` on ``args``; an epspp error that its own handling let through (a full disk while
    writing its last output, a damaged file) in one line, exit status 2."""
    from epspp.errors import EPSError

    module, function = TOOLS[command]
    try:
        return getattr(importlib.import_module(module), function)(args)
    except EPSError as error:
        print(f"epspp {command}: error: {one_line(error)}", file=sys.stderr)
        return 2


def run_lightning_cli(args: list[str] | None, options: list[str], start_over: bool) -> None:
    """Run ``EPSCLI`` on ``args`` (None: ``sys.argv``); its errors in one line (exit status 2)."""
    from pytorch_lightning import LightningModule

    from epspp.cli.lightning import EPSCLI, RunConfigDump, wandb_run_finished
    from epspp.data.datamodule import EPSDataModule
    from epspp.errors import EPSError

    try:
        check_config_files(options)
        with wandb_run_finished():
            EPSCLI(
                LightningModule,
                EPSDataModule,
                subclass_mode_model=True,
                seed_everything_default=0,
                save_config_callback=RunConfigDump,  # never replaces a config.yaml that epspp did not write
                args=args,
                start_over=start_over,
            )
    except EPSError as error:
        print(f"epspp: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as error:  # Lightning's check of a validation interval longer than an epoch
        if "val_check_interval" not in str(error):
            raise
        print(
            f"epspp: error: {' '.join(str(error).split())} (with --trainer.check_val_every_n_epoch N, an integer "
            "--trainer.val_check_interval counts batches within one epoch: give both, e.g. "
            "--trainer.val_check_interval 1.0 to validate at epoch ends)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def packaged_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config``/``-c`` value that is not a file replaced by the packaged config of that name."""
    from epspp.config_files import resolve_config

    resolved = list(args)
    for index, arg in enumerate(resolved):
        if arg.startswith("--config="):
            resolved[index] = "--config=" + resolve_config(arg.split("=", 1)[1])
        elif index and resolved[index - 1] in ("--config", "-c") and not arg.startswith("-"):
            resolved[index] = resolve_config(arg)
    return resolved


def check_config_files(args: list[str]) -> None:
    """Fail in one line naming the file when a ``--config`` file is missing or is not valid YAML."""
    import yaml

    from epspp.errors import ConfigError

    pairs = [arg.split("=", 1) for arg in args if arg.startswith("--config=")]
    pairs += [[flag, value] for flag, value in zip(args, args[1:], strict=False) if flag in ("--config", "-c")]
    for _, value in pairs:
        if value.startswith("-"):
            continue
        try:
            with open(value, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle)
        except OSError as error:
            raise ConfigError(f"config file {value}: {error.strerror}") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"config file {value}{where} is not valid YAML: {problem}") from None
        if not isinstance(loaded, dict):
            what = "is empty" if loaded is None else f"holds a {type(loaded).__name__}"
            raise ConfigError(
                f"config file {value} {what}: expected a mapping of settings (trainer:, model:, "
                "data:, ...), e.g. configs/demo/localization_eps++.yaml"
            )


def one_line(error: Exception) -> str:
    """The message of an epspp error, also when a DataLoader worker re-raised it with its traceback."""
    text = str(error)
    if "Original Traceback" in text:  # torch's ExceptionWrapper: "Caught X in DataLoader worker ..." + traceback
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith("epspp.errors.") and ": " in last else last
    return text


def quiet_unactionable_warnings(subcommand: str) -> None:
    """Hide the library warnings of ``UNACTIONABLE_WARNINGS`` that apply to this subcommand (all of them shown
    with ``--verbose`` or ``EPSPP_VERBOSE=1``)."""
    from epspp.cli.quiet import is_verbose

    if is_verbose():
        return
    for subcommands, message in UNACTIONABLE_WARNINGS:
        if subcommand in subcommands:
            warnings.filterwarnings("ignore", message=message)
