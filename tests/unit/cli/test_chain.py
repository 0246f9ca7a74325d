"""``epspp chain``'s options away from their defaults: stage 3's setting, stage 1's method, no test split, each
stage's own extra arguments, and the process layout, launcher, logs and executable handed to the runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import epspp.cli.chain
from epspp.chain import Processes, RunLayout
from epspp.cli.chain import chain_main, reproduction_stages

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _configs(args: tuple[str, ...]) -> list[str]:
    return [args[i + 1] for i, word in enumerate(args) if word == "--config"]


@pytest.mark.parametrize("test", [True, False])
def test_the_chain_of_a_method_and_setting_other_than_the_default(tmp_path: Path, test: bool) -> None:
    layout = RunLayout(tmp_path / "r")
    stages = reproduction_stages(
        "voc",
        "ssss",
        "eps",
        Path("d"),
        tmp_path / "r",
        CONFIGS,
        fit_args=("--fit",),
        predict_args=("--predict",),
        test_args=("--test",),
        test=test,
    )
    voc = CONFIGS / "voc"
    expected = [
        ("localization", layout.localization, [voc / "localization_eps.yaml"], ("--fit",), ()),
        ("pseudo-masks", layout.pseudo_masks, [voc / "pseudo_masks.yaml"], ("--predict",), (layout.localization,)),
        (
            "segmentation ssss",
            layout.segmentation("ssss"),
            [voc / "segmentation_ssss.yaml"],
            ("--fit",),
            (layout.pseudo_masks,),
        ),
    ]
    if test:
        expected.append(
            (
                "test split ssss",
                layout.test("ssss"),
                [voc / "segmentation_ssss.yaml", voc / "segmentation_test.yaml"],
                ("--test",),
                (layout.segmentation("ssss"),),
            )
        )
    assert [(s.name, s.folder, _configs(s.args), s.overrides, s.inputs) for s in stages] == [
        (name, folder, [str(c) for c in configs], overrides, inputs)
        for name, folder, configs, overrides, inputs in expected
    ]
    masks = stages[2].args[stages[2].args.index("--data.pseudo_mask_dir") + 1]
    assert masks == str(layout.pseudo_masks)


class _Runner:
    """Records what ``chain_main`` gives the runner."""

    made: list[_Runner] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs, self.executable, self.done = kwargs, None, ""
        _Runner.made.append(self)

    def run(self, stages: list) -> None:
        self.done, self.stages = "run", stages

    def print_commands(self, stages: list) -> None:
        self.done, self.stages = "print", stages


@pytest.mark.parametrize(
    ("options", "processes", "launcher", "log_name", "executable", "done"),
    [
        ([], None, (), None, None, "run"),
        (["--devices", "1", "--print"], Processes(1, 1, None, None), (), None, None, "print"),
        (
            ["--devices", "2", "--num-nodes", "3", "--strategy", "ddp_spawn", "--sync-batchnorm", "false", "--logs"],
            Processes(2, 3, "ddp_spawn", False),
            (),
            "log.txt",
            None,
            "run",
        ),
        (
            ["--devices", "4", "--sync-batchnorm", "true", "--launcher", "srun --ntasks 4", "--epspp", "python -m x"],
            Processes(4, 1, None, True),
            ("srun", "--ntasks", "4"),
            None,
            ("python", "-m", "x"),
            "run",
        ),
    ],
)
def test_each_option_reaches_the_runner(
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    processes: Processes | None,
    launcher: tuple,
    log_name: str | None,
    executable: tuple | None,
    done: str,
) -> None:
    monkeypatch.setattr(epspp.cli.chain, "Runner", _Runner)
    monkeypatch.setattr(_Runner, "made", [])
    base = ["--dataset", "voc", "--root", "d", "--out", "r", "--configs", str(CONFIGS), "--no-test"]
    assert chain_main(base + options) == 0
    (runner,) = _Runner.made
    assert runner.kwargs == {"tag": "chain", "launcher": launcher, "processes": processes, "log_name": log_name}
    assert (runner.executable, runner.done) == (executable, done)
    # the defaults: EPS++ and WSSS; --no-test: three stages
    assert [s.name for s in runner.stages] == ["localization", "pseudo-masks", "segmentation wsss"]
    assert _configs(runner.stages[0].args) == [str(CONFIGS / "voc" / "localization_eps++.yaml")]
