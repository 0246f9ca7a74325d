"""The demo pipeline (``epspp demo``): every stage on the synthetic dataset, resumable, with a report.

The stages are ``epspp.chain`` stages: each runs as the user would run it (``epspp fit|predict`` in a
subprocess) and writes a ``stage.json`` marker when it finishes; a rerun skips finished stages, and a stage
whose command changed or whose input stage ran again runs again (its old outputs kept in
``<folder>.previous``).  The measurements end up in ``OUT/report.json`` and ``OUT/report.md`` (see
``epspp.report``).
"""

from __future__ import annotations

from pathlib import Path

from epspp.chain import Runner, Stage, fit_stage, last_checkpoint, predict_stage
from epspp.config_files import PACKAGED, config_folder
from epspp.data.io import DatasetError
from epspp.runs.ownership import claim_folder, holds_stage_marker

METHODS = {"cam": "localization_cam.yaml", "eps": "localization_eps.yaml", "eps++": "localization_eps++.yaml"}
#: the demo's regimes: the papers' (a stage-0 backbone fine-tuned, configs/demo) and from scratch (configs/demo/scratch)
REGIMES = ("pretrained", "scratch")
DEFAULT_OUT = {"pretrained": "runs/demo", "scratch": "runs/demo_scratch"}
SEGMENTATION = ("wsss", "ssss", "labeled_only")


def demo_configs(configs: str | None) -> Path:
    """The demo's config folder: ``--configs`` (a folder, or a packaged one's name), else ``configs/demo`` here or
    the packaged ``demo`` configs."""
    if configs:
        return config_folder(configs)
    for candidate in (Path("configs/demo"), PACKAGED / "demo"):
        if (candidate / "pseudo_masks.yaml").is_file():
            return candidate
    raise DatasetError(
        f"cannot find the demo's configs ({PACKAGED / 'demo'} of the installed epspp): pass --configs DIR"
    )


def pretrain_stage(
    configs: Path,
    corpus: Path,
    folder: Path,
    *,
    init: list[str] | tuple[str, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
    name: str = "pretraining",
) -> Stage:
    """Stage 0: ``epspp fit`` of ``configs/pretrain.yaml`` on ``corpus``, writing ``folder/backbone.pth`` (the
    demo's and the studies')."""
    return fit_stage(name, folder, [configs / "pretrain.yaml"], corpus, init=init, overrides=overrides)


def demo_stages(
    root: Path, out: Path, configs: Path, overrides: list[str], regime: str, pretrain_root: Path
) -> dict[str, Stage]:
    """The demo's stages in order, by their key in the report (``pretrain``, ``localization/<method>``,
    ``pseudo_masks/<method>``, ``val_masks/<method>``, ``segmentation/<variant>``; ``dataset`` and
    ``pretrain_corpus`` when those are absent and generated first)."""
    stages: dict[str, Stage] = {}
    if not root.exists():
        stages["dataset"] = Stage("dataset", out / "dataset", ("prepare", "synthetic", "--root", str(root)))
    init: list[str] = []
    before: tuple[Path, ...] = ()  # what every fit starts from
    if regime == "pretrained":
        if not pretrain_root.exists():
            stages["pretrain_corpus"] = Stage(
                "pretraining corpus",
                out / "pretrain_corpus",
                ("prepare", "pretrain-corpus", "--root", str(pretrain_root)),
            )
        stages["pretrain"] = pretrain_stage(configs, pretrain_root, out / "pretrain", overrides=overrides)
        init = ["--model.init_args.pretrained_path", str(out / "pretrain" / "backbone.pth")]
        before = (out / "pretrain",)
    else:
        configs = configs / "scratch"
    for method, config in METHODS.items():
        folder = out / method / "localization"
        stages[f"localization/{method}"] = fit_stage(
            f"localization {method}", folder, [configs / config], root, init=init, overrides=overrides, inputs=before
        )
        # the train split's pseudo-masks (what stage 3 learns from) and the val split's, on which the report
        # chooses each method's background threshold (never on the train split it reports)
        for split, name in (("train", "pseudo_masks"), ("val", "val_masks")):
            stages[f"{name}/{method}"] = predict_stage(
                f"pseudo-masks {split} {method}",
                out / method / name,
                [configs / "pseudo_masks.yaml"],
                root,
                last_checkpoint(folder),
                extra=["--data.predict_split", split],
                inputs=[folder],
            )
    pseudo = out / "eps++" / "pseudo_masks"
    variants = {
        "wsss": ("segmentation_wsss.yaml", ["--data.pseudo_mask_dir", str(pseudo)], (pseudo,)),
        "ssss": ("segmentation_ssss.yaml", ["--data.pseudo_mask_dir", str(pseudo)], (pseudo,)),
        "labeled_only": (
            "segmentation_wsss.yaml",
            ["--data.pseudo_mask_dir", "null", "--data.train_split", "labeled_10pct"],
            (),
        ),
    }
    for variant, (config, extra, reads) in variants.items():
        folder = out / "segmentation" / variant
        # (the order of an older epspp's stage.json: its finished stages stay finished)
        stages[f"segmentation/{variant}"] = Stage(
            f"segmentation {variant}",
            folder,
            (
                "fit",
                "--config",
                str(configs / config),
                *extra,
                "--data.root",
                str(root),
                "--trainer.default_root_dir",
                str(folder),
                *init,
            ),
            tuple(overrides),
            inputs=(*before, *reads),
            resume=True,
        )
    return stages


def run_demo(
    root: Path,
    out: Path,
    configs: Path,
    overrides: list[str],
    regime: str = "pretrained",
    pretrain_root: Path = Path("data/pretrain"),
) -> dict:
    """All stages of the demo in one regime; returns the report dict (also written to OUT/report.json).

    ``pretrained`` (the papers' regime): stage 0 first, then stages 1 and 3 from its backbone with the configs
    of ``configs``; ``scratch``: the configs of ``configs/scratch``, from random weights.
    """
    from epspp.report import write_report

    if regime not in REGIMES:
        raise DatasetError(f"--regime {regime}: expected one of {', '.join(REGIMES)}")
    for path, what in ((out, "--out"), (root, "--root"), (pretrain_root, "--pretrain-root")):
        if path.exists() and not path.is_dir():
            raise DatasetError(f"{what} {path} is a file: give a folder")
    claim_folder(
        out,
        "epspp demo",
        "--out",
        {root: "the dataset root", pretrain_root: "the pretraining corpus"},
        legacy=holds_stage_marker,
    )
    stages = demo_stages(root, out, configs, overrides, regime, pretrain_root)
    records = Runner(tag="demo").run(list(stages.values()))
    measured = {key: records[stage.name] for key, stage in stages.items() if key not in ("dataset", "pretrain_corpus")}
    return write_report(root, out, measured, regime)
