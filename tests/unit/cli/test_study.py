"""``epspp study``'s command line (``epspp.cli.study``): the default grids of docs/study.md written out, the values
each study function receives from the parsed options, the rules at the door (rate 0 required, fraction 0 refused),
the fit overrides around the user's, the config-folder check and the stage environment."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from epspp.cli import study as cli
from epspp.study.runner import StudyError

QUIET_FIRST = ["--trainer.limit_val_batches", "0"]
QUIET_LAST = ["--trainer.enable_progress_bar", "false", "--data.num_workers", "0"]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The study functions replaced by recorders: ``calls[name]`` = (args, kwargs) of the last call."""
    seen: dict[str, Any] = {}

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            seen[name] = (args, kwargs)

        return record

    for name in ("prepare", "study_saliency_errors", "study_readings", "study_labeled_fraction", "claim_folder"):
        monkeypatch.setattr(cli, name, recorder(name))
    threads = torch.get_num_threads()
    yield seen
    torch.set_num_threads(threads)  # study_main sets one thread for the whole process


def test_saliency_errors_defaults(calls: dict[str, Any], tmp_path: Path) -> None:
    # docs/study.md: both regimes, rates 0 and 0.5, seeds 0 1 2, CAM / EPS / EPS++, the three error types, 5 classes,
    # --jobs 2, OUT/data_<K>classes, W&B on
    assert cli.study_main(["saliency-errors", "--out", str(tmp_path)]) == 0
    (ctx, regimes, error_types, rates, methods, seeds, jobs, wandb), kwargs = calls["study_saliency_errors"]
    assert kwargs == {}
    assert regimes == ["scratch", "pretrained"]
    assert error_types == ["missing_class", "missing_object", "false_coverage"]
    assert rates == [0.0, 0.5]
    assert methods == ["cam", "eps", "eps++"]
    assert seeds == [0, 1, 2]
    assert (jobs, wandb) == (2, True)
    assert ctx.out == tmp_path and ctx.root == tmp_path / "data_5classes"
    assert ctx.overrides == QUIET_FIRST + QUIET_LAST
    assert calls["prepare"] == ((ctx, 5, {"num_train": None, "num_val": None, "image_size": None}), {})
    assert calls["claim_folder"][0][:3] == (tmp_path, "epspp study", "--out")
    assert calls["claim_folder"][0][3] == {None: "the dataset root"}


def test_saliency_errors_options_reach_the_study(calls: dict[str, Any], tmp_path: Path) -> None:
    args = ["saliency-errors", "--out", str(tmp_path), "--root", str(tmp_path / "d"), "--regimes", "pretrained"]
    args += ["--rates", "0.5", "0", "1", "0.5", "--seeds", "2", "0", "2", "--jobs", "3", "--no-wandb"]
    args += ["--error-types", "false_coverage", "--methods", "eps++", "eps++/no-pamr", "--num-classes", "7"]
    args += ["--num-train", "10", "--num-val", "4", "--image-size", "48", "--", "--trainer.max_steps=3", "--x", "y"]
    assert cli.study_main(args) == 0
    (ctx, regimes, error_types, rates, methods, seeds, jobs, wandb), _ = calls["study_saliency_errors"]
    assert regimes == ["pretrained"] and error_types == ["false_coverage"]
    assert rates == [0.0, 0.5, 1.0]  # sorted, each once; 1 is inside [0, 1]
    assert methods == ["eps++", "eps++/no-pamr"]
    assert seeds == [2, 0]  # each once, in the order given
    assert (jobs, wandb) == (3, False)
    assert ctx.root == tmp_path / "d"
    assert ctx.overrides == [*QUIET_FIRST, "--trainer.max_steps=3", "--x", "y", *QUIET_LAST]
    assert calls["prepare"][0][1:] == (7, {"num_train": 10, "num_val": 4, "image_size": 48})
    assert calls["claim_folder"][0][3] == {tmp_path / "d": "the dataset root"}


def test_full_grid(calls: dict[str, Any], tmp_path: Path) -> None:
    # docs/study.md: --full-grid: rates 0, 0.25, 0.5, 0.75 and seeds 0-4; fractions 0.01 0.02 0.05 0.1 0.2 (docs)
    assert cli.study_main(["saliency-errors", "--out", str(tmp_path), "--full-grid"]) == 0
    (_, regimes, _, rates, _, seeds, _, _), _ = calls["study_saliency_errors"]
    assert (regimes, rates, seeds) == (["scratch", "pretrained"], [0.0, 0.25, 0.5, 0.75], [0, 1, 2, 3, 4])
    assert cli.study_main(["labeled-fraction", "--out", str(tmp_path), "--full-grid", "--seeds", "5"]) == 0
    (_, regimes, fractions, seeds, _, _, _), _ = calls["study_labeled_fraction"]
    assert (regimes, fractions, seeds) == (["scratch", "pretrained"], [0.01, 0.02, 0.05, 0.1, 0.2], [5])


def test_labeled_fraction_defaults_and_fractions(calls: dict[str, Any], tmp_path: Path) -> None:
    # docs/study.md: --regimes pretrained --num-classes 20 --fractions 0.02 --seeds 0 1 2
    assert cli.study_main(["labeled-fraction", "--out", str(tmp_path)]) == 0
    (ctx, regimes, fractions, seeds, jobs, wandb, num_classes), _ = calls["study_labeled_fraction"]
    assert (regimes, fractions, seeds, jobs, wandb, num_classes) == (["pretrained"], [0.02], [0, 1, 2], 2, True, 20)
    assert ctx.root == tmp_path / "data_20classes"
    assert calls["prepare"][0][1] == 20
    args = ["labeled-fraction", "--out", str(tmp_path), "--fractions", "1", "0.5", "0.1", "0.5", "--num-classes", "3"]
    assert cli.study_main(args) == 0
    (ctx, _, fractions, _, _, _, num_classes), _ = calls["study_labeled_fraction"]
    assert (fractions, num_classes, ctx.root) == ([0.1, 0.5, 1.0], 3, tmp_path / "data_3classes")


def test_readings_defaults(calls: dict[str, Any], tmp_path: Path) -> None:
    assert cli.study_main(["readings", "--out", str(tmp_path), "--methods", "eps", "cam", "eps"]) == 0
    assert calls["study_readings"][0][2] == ["eps", "cam"]
    assert cli.study_main(["readings", "--out", str(tmp_path)]) == 0
    (ctx, regimes, methods, seeds, jobs, wandb), _ = calls["study_readings"]
    assert methods == ["cam", "eps", "eps++", "eps++/softmax", "eps++/no-pamr"]
    assert (regimes, seeds, jobs, wandb) == (["scratch", "pretrained"], [0, 1, 2], 2, True)
    assert ctx.root == tmp_path / "data_5classes"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["saliency-errors", "--rates", "0.5"], "--rates must include 0 (the shared clean-saliency point)"),
        (["saliency-errors", "--rates", "0.25", "0.5"], "--rates must include 0"),
        (["labeled-fraction", "--fractions", "0", "0.5"], "--fractions must be above 0"),
        (["labeled-fraction", "--fractions", "1.5"], "1.5"),
        (["saliency-errors", "--jobs", "0"], "--jobs"),
    ],
)
def test_refused_at_the_door(
    calls: dict[str, Any], capsys: pytest.CaptureFixture, tmp_path: Path, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.study_main([*args, "--out", str(tmp_path)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert calls == {}


def test_errors_are_one_line(
    calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def refuse(*args: Any) -> None:
        raise StudyError("dataset d has 4 classes, not 5")

    monkeypatch.setattr(cli, "prepare", refuse)
    assert cli.study_main(["readings", "--out", "o"]) == 2
    assert capsys.readouterr().err == "epspp study: error: dataset d has 4 classes, not 5\n"


def test_check_configs(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "pseudo_masks.yaml").write_text("{}")
    cli.check_configs(tmp_path, ["scratch"])  # the scratch regime needs no pretrain.yaml
    with pytest.raises(StudyError, match=r"has no pseudo_masks.yaml \(the pretrained regime's configs\)"):
        cli.check_configs(tmp_path, ["scratch", "pretrained"])
    (tmp_path / "pseudo_masks.yaml").write_text("{}")
    with pytest.raises(StudyError, match=r"has no pretrain.yaml \(stage 0 of the pretrained regime\)"):
        cli.check_configs(tmp_path, ["pretrained"])
    (tmp_path / "pretrain.yaml").write_text("{}")
    cli.check_configs(tmp_path, ["pretrained", "scratch"])
    with pytest.raises(StudyError, match=r"has no scratch/pseudo_masks.yaml \(the scratch regime's configs\)"):
        cli.check_configs(tmp_path / "scratch", ["scratch"])
    with pytest.raises(StudyError, match="does not exist"):
        cli.check_configs(tmp_path / "none", ["scratch"])


def test_study_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = cli.study_env()
    assert {k: env[k] for k in ("OMP_NUM_THREADS", "WANDB_MODE", "WANDB_SILENT", "PYTHONWARNINGS")} == {
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONWARNINGS": "ignore",
    }
    monkeypatch.setenv("WANDB_MODE", "online")
    assert cli.study_env()["WANDB_MODE"] == "online"  # the user's choice is kept


def test_confirm_maps_the_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import epspp.study.confirm as confirm

    plan = types.SimpleNamespace(regime="scratch", overrides=("--a", "1"), saliency_errors=True)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(confirm, "load_plan", lambda path: plan if path == Path("p.yaml") else None)
    monkeypatch.setattr(confirm, "dry_run", lambda p, jobs: f"dry {p is plan} {jobs}")
    monkeypatch.setattr(confirm, "confirm", lambda ctx, p, jobs: seen.update(ctx=ctx, jobs=jobs) or [Path("x.csv")])
    monkeypatch.setattr(cli, "claim_folder", lambda *args, **kwargs: seen.update(claim=args))
    threads = torch.get_num_threads()
    try:
        assert cli.study_main(["confirm", "--plan", "p.yaml", "--out", str(tmp_path), "--dry-run", "--jobs", "3"]) == 0
        assert capsys.readouterr().out == "dry True 3\n" and seen == {}
        assert cli.study_main(["confirm", "--plan", "p.yaml", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    ctx = seen["ctx"]
    assert (ctx.out, ctx.root, ctx.saliency_errors, seen["jobs"]) == (tmp_path, tmp_path / "data", True, 2)
    assert ctx.overrides == [*QUIET_FIRST, "--a", "1", *QUIET_LAST]
    assert seen["claim"][:4] == (tmp_path, "epspp study", "--out", {})
    assert capsys.readouterr().out.startswith("[study] wrote x.csv in ")


@pytest.mark.parametrize(
    ("study", "function", "files"),
    [
        ("saliency-errors", "study_saliency_errors", ["study.csv", "study_claims.csv", "study.md", "study.png"]),
        ("readings", "study_readings", ["readings.csv", "readings_claims.csv", "readings.md", "readings.png"]),
        (
            "labeled-fraction",
            "study_labeled_fraction",
            ["labeled_fraction.csv", "labeled_fraction_claims.csv", "labeled_fraction.md", "labeled_fraction.png"],
        ),
    ],
)
def test_a_config_folder_and_class_count_reach_the_study_which_names_its_files(
    calls: dict[str, Any], capsys: pytest.CaptureFixture, tmp_path: Path, study: str, function: str, files: list[str]
) -> None:
    configs = tmp_path / "mine"
    (configs / "scratch").mkdir(parents=True)
    (configs / "scratch" / "pseudo_masks.yaml").write_text("{}")
    out = tmp_path / "out"
    args = [study, "--out", str(out), "--configs", str(configs), "--regimes", "scratch", "--num-classes", "3"]
    assert cli.study_main(args) == 0
    ctx = calls[function][0][0]
    assert (ctx.configs, ctx.root, calls["prepare"][0][1]) == (configs, out / "data_3classes", 3)
    said = capsys.readouterr().out
    assert said.startswith("[study] wrote " + ", ".join(str(out / name) for name in files) + " in ")
