"""The stage chain (epspp.chain): skip, rerun, reruns of dependents, old outputs kept, print mode, resume and the
whole run's ETA, with a stand-in ``epspp`` (a small Python script) that records its arguments."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from epspp.chain import (
    Processes,
    RunLayout,
    Runner,
    Stage,
    StageError,
    ending_on_signals,
    fit_stage,
    last_checkpoint,
    predict_stage,
    resume_checkpoint,
    run_command,
    whole_run_eta,
)

FAKE_EPSPP = """
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as handle:
    handle.write(json.dumps(args) + "\\n")
print("fake epspp", " ".join(args))
if "--fail" in args:
    print("the last words")
    sys.exit(3)
for flag in ("--trainer.default_root_dir", "--pseudo_masks.output_dir", "--out"):
    if flag in args:
        folder = Path(args[args.index(flag) + 1])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "output.txt").write_text(" ".join(args))
        env = os.environ.get("FAKE_TAG", "") + " " + os.environ.get("EPSPP_CHAIN_PARENT_PID", "")
        (folder / "env.txt").write_text(env)
        if "--progress" in args:
            (folder / "progress.json").write_text(json.dumps({
                "stage": "fit", "step": 30, "max_steps": 100, "elapsed_s": 15.0, "steps_per_s": 2.0, "eta_s": 35.0,
                "done": False}))
            time.sleep(1.0)
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in ``epspp``; its calls are read with ``calls(tmp_path)``."""
    script = tmp_path / "fake_epspp.py"
    script.write_text(FAKE_EPSPP)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    return script


def calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "calls.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    path.unlink(missing_ok=True)
    return found


def runner(fake: Path, **options: object) -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    return Runner(tag="test", executable=(sys.executable, str(fake)), out=out, poll_s=0.05, **options), out


def two_stages(tmp_path: Path, first: tuple[str, ...] = (), second: tuple[str, ...] = ()) -> list[Stage]:
    """A prepare stage, then a fit that reads its folder."""
    a, b = tmp_path / "run" / "a", tmp_path / "run" / "b"
    return [
        Stage("first", a, ("prepare", "x", "--out", str(a)), first),
        Stage("second", b, ("fit", "--trainer.default_root_dir", str(b)), second, inputs=(a,)),
    ]


def test_the_layout_names_every_folder() -> None:
    run = RunLayout(Path("runs/x"))
    assert [
        run.dataset,
        run.saliency,
        run.localization,
        run.pseudo_masks,
        run.val_masks,
        run.segmentation("ssss"),
        run.test("wsss"),
        run.predictions,
        run.report,
    ] == [
        Path("runs/x/dataset"),
        Path("runs/x/saliency"),
        Path("runs/x/localization"),
        Path("runs/x/pseudo_masks"),
        Path("runs/x/val_masks"),
        Path("runs/x/segmentation_ssss"),
        Path("runs/x/segmentation_wsss/test"),
        Path("runs/x/predictions"),
        Path("runs/x/report"),
    ]
    assert last_checkpoint(run.localization) == Path("runs/x/localization/checkpoints/last.ckpt")


def test_finished_stages_are_skipped_and_their_markers_say_what_ran(fake: Path, tmp_path: Path) -> None:
    stages = two_stages(tmp_path)
    run, out = runner(fake, env={**os.environ, "FAKE_TAG": "x"})  # the stages get the runner's env and pid
    records = run.run(stages)
    assert (tmp_path / "run" / "b" / "env.txt").read_text() == f"x {os.getpid()}"
    assert [c[:2] for c in calls(tmp_path)] == [["prepare", "x"], ["fit", "--trainer.default_root_dir"]]
    assert records["first"]["ran"] and records["second"]["ran"]
    marker = json.loads((tmp_path / "run" / "b" / "stage.json").read_text())
    assert marker["command"] == ["epspp", "fit", "--trainer.default_root_dir", str(tmp_path / "run" / "b")]
    assert marker["inputs"] == {str(tmp_path / "run" / "a"): records["first"]["id"]}
    assert "[test] 2 stages, 2 to run" in out.getvalue()
    assert f"[test] second: finished in 0 s; its files are in {tmp_path / 'run' / 'b'}" in out.getvalue()
    again, out = runner(fake)
    records = again.run(stages)
    assert calls(tmp_path) == [] and not records["first"]["ran"] and not records["second"]["ran"]
    assert out.getvalue().count("done before, skipping") == 2
    assert "[test] 2 stages, 0 to run, 2 done before" in out.getvalue()


def test_a_changed_command_reruns_the_stage_and_keeps_its_old_outputs(fake: Path, tmp_path: Path) -> None:
    runner(fake)[0].run(two_stages(tmp_path))
    calls(tmp_path)
    b = tmp_path / "run" / "b"
    (b / "mine.txt").write_text("from the first run")
    run, out = runner(fake)
    run.run(two_stages(tmp_path, second=("--trainer.max_steps", "7")))
    assert [c[0] for c in calls(tmp_path)] == ["fit"]  # the first stage is unchanged
    assert (tmp_path / "run" / "b.previous" / "mine.txt").read_text() == "from the first run"
    assert f"second: its command changed; running it again (the old outputs are in {b}.previous)" in out.getvalue()
    runner(fake)[0].run(two_stages(tmp_path, second=("--trainer.max_steps", "8")))
    assert (tmp_path / "run" / "b.previous-2" / "stage.json").is_file()  # the older copy is not replaced
    assert (tmp_path / "run" / "b.previous" / "mine.txt").is_file()


def test_a_stage_whose_input_ran_again_runs_again(fake: Path, tmp_path: Path) -> None:
    runner(fake)[0].run(two_stages(tmp_path))
    calls(tmp_path)
    run, out = runner(fake)
    run.run(two_stages(tmp_path, first=("--size", "2")))
    assert [c[0] for c in calls(tmp_path)] == ["prepare", "fit"]
    assert "second: its input stage ran again" in out.getvalue()
    # a new process: the input's marker id tells that it ran again, also when the dependent was not run then
    (tmp_path / "run" / "a" / "stage.json").unlink()
    runner(fake)[0].run_stage(two_stages(tmp_path, first=("--size", "2"))[0])
    calls(tmp_path)
    assert runner(fake)[0].plan(two_stages(tmp_path, first=("--size", "2"))) == [False, True]


def test_a_marker_of_an_older_epspp_reruns_only_after_its_input_ran_here(fake: Path, tmp_path: Path) -> None:
    stages = two_stages(tmp_path)
    runner(fake)[0].run(stages)
    calls(tmp_path)
    marker = tmp_path / "run" / "b" / "stage.json"
    marker.write_text(json.dumps({"stage": "second", "command": stages[1].command}))  # no ids
    run = runner(fake)[0]
    assert run.plan(stages) == [False, False]
    (tmp_path / "run" / "a" / "stage.json").unlink()
    run.run(stages)
    assert [c[0] for c in calls(tmp_path)] == ["prepare", "fit"]


def test_two_stages_of_one_name_are_refused_before_anything_runs(fake: Path, tmp_path: Path) -> None:
    first, second = two_stages(tmp_path)
    with pytest.raises(StageError, match="^stage names must differ, got first more than once"):
        runner(fake)[0].run([first, Stage("first", tmp_path / "c", ("fit",))])
    assert calls(tmp_path) == [] and not first.folder.exists()


def test_a_failed_stage_is_not_marked_and_names_its_log(fake: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run" / "bad"
    stage = Stage("bad", folder, ("fit", "--fail"))
    with pytest.raises(
        StageError,
        match=r"^bad failed \(exit 3\); its log is .*log.txt: fake epspp fit --fail \| "
        r"the last words$",
    ):
        runner(fake, log_name="log.txt")[0].run([stage])
    assert not (folder / "stage.json").exists() and "the last words" in (folder / "log.txt").read_text()
    (folder / "log.txt").unlink()
    folder.rmdir()
    with pytest.raises(StageError, match="command: "):
        runner(fake)[0].run([stage])
    assert not folder.exists()  # made by the runner, left empty: removed


def test_print_mode_writes_the_exact_commands(tmp_path: Path) -> None:
    config = tmp_path / "loc.yaml"
    config.write_text("data: {batch_size: 8}\nmodel: {init_args: {lr: 0.01}}\ntrainer: {max_steps: 100}\n")
    run = RunLayout(tmp_path / "r")
    stages = [
        fit_stage("stage 1", run.localization, [config], Path("data"), overrides=["--trainer.max_steps", "7"]),
        predict_stage(
            "masks",
            run.pseudo_masks,
            [Path("pm.yaml")],
            Path("data"),
            last_checkpoint(run.localization),
            inputs=[run.localization],
        ),
        Stage("tool", run.dataset, ("prepare", "synthetic", "--root", "d")),
    ]
    out = io.StringIO()
    Runner(
        executable=("epspp",), launcher=("srun", "--label"), processes=Processes(2, 1, sync_batchnorm=True)
    ).print_commands(stages, out)
    r = tmp_path / "r"
    assert out.getvalue().splitlines() == [
        f"srun --label epspp fit --config {config} --data.root data --trainer.default_root_dir {r}/localization "
        "--ckpt_path last --trainer.devices 2 --trainer.num_nodes 1 --trainer.strategy ddp --trainer.sync_batchnorm "
        "true --data.batch_size 4 --model.init_args.lr 0.01 --trainer.max_steps 7",
        f"srun --label epspp predict --config pm.yaml --data.root data --ckpt_path {r}/localization/checkpoints/"
        f"last.ckpt --pseudo_masks.output_dir {r}/pseudo_masks --trainer.devices 2 --trainer.num_nodes 1 "
        "--trainer.strategy ddp",
        "epspp prepare synthetic --root d",  # a tool: no launcher, no Trainer flags
    ]
    assert not r.exists()  # printing writes nothing
    assert stages[0].step_budget() == 7 and stages[1].step_budget() is None
    assert fit_stage("s", r, [config], Path("d")).step_budget() == 100  # from the config
    assert fit_stage("s", r, [config], Path("d"), overrides=["--trainer.max_steps=-1"]).step_budget() is None


def test_a_fit_resumes_from_its_newest_checkpoint(tmp_path: Path) -> None:
    assert resume_checkpoint(tmp_path) is None  # a fresh start: no --ckpt_path
    stage = fit_stage("s", tmp_path, [], Path("d"))
    assert "--ckpt_path" not in Runner().argv(stage) and "--ckpt_path last" in Runner().shown(stage, later=True)
    last = last_checkpoint(tmp_path)
    last.parent.mkdir()
    last.write_bytes(b"x")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(last, (1000, 1000))
    os.utime(hpc, (2000, 2000))
    assert resume_checkpoint(tmp_path) == str(hpc)  # SLURM's requeue checkpoint is newer
    os.utime(last, (3000, 3000))
    assert resume_checkpoint(tmp_path) == "last"
    assert Runner().argv(stage)[-2:] == ["--ckpt_path", "last"]


def test_whole_run_eta_by_hand() -> None:
    progress = {"step": 30, "max_steps": 100, "steps_per_s": 2.0, "eta_s": None}
    # this fit: 70 steps at 2/s = 35 s; the fit to come: 200 steps at stage 1's 4/s = 50 s; a predict not counted
    assert whole_run_eta(progress, 4.0, [200, None]) == (85.0, 1)
    assert whole_run_eta(progress | {"eta_s": 40.0}, None, [200]) == (140.0, 0)  # its own eta_s, its own rate
    assert whole_run_eta({"step": 3, "max_steps": 10, "steps_per_s": 0.0, "eta_s": None}, None, []) == (None, 0)
    # a rate of exactly 0 (no step measured yet) estimates no fit to come; without one to come, the fit's own eta_s
    assert whole_run_eta({"eta_s": 40.0, "steps_per_s": 0.0}, None, [200]) == (None, 0)
    assert whole_run_eta({"eta_s": 40.0, "steps_per_s": 0.0}, None, [None]) == (40.0, 1)


def test_a_flag_given_last_without_its_value_has_no_value() -> None:
    """``FLAG VALUE`` needs the word after the flag (boundary sweep: the flag as the last word)."""
    from epspp.chain import _flag_values

    flags = ("--config", "-c")
    assert _flag_values(["-c", "a.yaml", "--config"], flags, "--config=") == ["a.yaml"]
    assert _flag_values(["-c", "a.yaml", "--config", "b.yaml"], flags, "--config=") == ["a.yaml", "b.yaml"]


def test_the_whole_run_eta_is_printed_from_the_running_fits_progress(fake: Path, tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "r")
    stages = [
        fit_stage("stage 1", layout.localization, [], Path("d"), overrides=["--progress"], max_steps=100),
        predict_stage("masks", layout.pseudo_masks, [], Path("d"), last_checkpoint(layout.localization)),
        fit_stage("stage 3", layout.segmentation("wsss"), [], Path("d"), max_steps=200),
    ]
    run, out = runner(fake)
    run.run(stages)
    # 35 s left in stage 1 (its eta_s) + stage 3's 200 steps at stage 1's 2 steps/s = 135 s
    assert (
        "[test] whole run: about 2 min 15 s left (an estimate: 1 fit(s) to come at stage 1's 2.00 steps/s; 1 "
        "stage(s) without a step budget not counted)"
    ) in out.getvalue().splitlines()
    assert out.getvalue().count("whole run:") == 1  # stage 3 wrote no progress.json: no ETA, no error


def test_epspp_chain_prints_the_papers_chain(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from epspp.cli.chain import chain_main

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # configs/ of the repository
    assert (
        chain_main(
            [
                "--dataset",
                "coco",
                "--method",
                "cam",
                "--root",
                "d",
                "--out",
                "r",
                "--devices",
                "1",
                "--epspp",
                "epspp",
                "--fit-args=--data.resize_long '[40, 56]'",
                "--test-args=--x 1",
                "--print",
            ]
        )
        == 0
    )
    trainer = "--trainer.devices 1 --trainer.num_nodes 1 --trainer.strategy auto"
    assert capsys.readouterr().out.splitlines() == [
        "epspp fit --config configs/coco/localization_cam.yaml --data.root d --trainer.default_root_dir "
        f"r/localization --ckpt_path last {trainer} --data.batch_size 16 --model.init_args.lr 0.01 "
        "--data.resize_long '[40, 56]'",
        "epspp predict --config configs/coco/pseudo_masks.yaml --data.root d --ckpt_path "
        f"r/localization/checkpoints/last.ckpt --pseudo_masks.output_dir r/pseudo_masks {trainer}",
        "epspp fit --config configs/coco/segmentation_wsss.yaml --data.root d --data.pseudo_mask_dir r/pseudo_masks "
        f"--trainer.default_root_dir r/segmentation_wsss --ckpt_path last {trainer} --data.batch_size 5 "
        "--trainer.accumulate_grad_batches 2 --model.init_args.lr 0.00025 --data.resize_long '[40, 56]'",
        "epspp predict --config configs/coco/segmentation_wsss.yaml --config configs/coco/segmentation_test.yaml "
        "--data.root d --ckpt_path r/segmentation_wsss/checkpoints/last.ckpt --trainer.default_root_dir "
        f"r/segmentation_wsss/test --pseudo_masks.output_dir r/segmentation_wsss/test {trainer} --x 1",
    ]
    assert chain_main(["--dataset", "voc", "--root", "d", "--out", "r", "--fit-args=--a 'open", "--print"]) == 2
    assert (
        capsys.readouterr().err == 'epspp chain: error: --fit-args "--a \'open": No closing quotation (close the '
        "quote)\n"
    )


# ------------------------------------------------------------ the stage's process ends with the runner
STAGE = """
import os, signal, sys, time
from pathlib import Path
from epspp.chain import end_with_parent
end_with_parent()
folder = Path(sys.argv[1])
def ended(number, frame):
    (folder / "ended").write_text(str(number))
    sys.exit(0)
signal.signal(signal.SIGTERM, ended)
(folder / "pid").write_text(str(os.getpid()))
time.sleep(60)
"""


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupted_runner_ends_its_stage_and_waits_for_it(tmp_path: Path, how: str) -> None:
    """Ctrl-C (KeyboardInterrupt) or SIGTERM of the runner: the stage gets SIGTERM and has ended when the runner
    goes on (its handler ran), none left running."""
    (tmp_path / "stage.py").write_text(STAGE)

    def interrupt() -> None:
        if (tmp_path / "pid").is_file():
            if how == "SIGINT":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)

    def unhandled(number: int, _frame: object) -> None:  # (instead of SIGTERM ending pytest)
        raise RuntimeError("SIGTERM reached the handler outside ending_on_signals")

    argv = [sys.executable, str(tmp_path / "stage.py"), str(tmp_path)]
    saved = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(KeyboardInterrupt if how == "SIGINT" else SystemExit) as error, ending_on_signals():
            run_command(argv, None, None, interrupt, 0.05)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the runner's handler is gone with it
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert how == "SIGINT" or error.value.code == 128 + signal.SIGTERM  # type: ignore[union-attr]
    assert (tmp_path / "ended").read_text() == str(int(signal.SIGTERM))
    assert not alive(int((tmp_path / "pid").read_text()))


def test_a_stage_does_not_outlive_a_killed_runner(tmp_path: Path) -> None:
    """``kill -9`` of the runner (``epspp demo``): the kernel sends its stage SIGTERM (PR_SET_PDEATHSIG), so no
    orphan stage keeps writing while a rerun starts."""
    (tmp_path / "stage.py").write_text(STAGE)
    argv = [sys.executable, str(tmp_path / "stage.py"), str(tmp_path)]
    code = f"from epspp.chain import run_command; run_command({argv!r}, None, None, lambda: None, 1.0)"
    runner_process = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert wait_for((tmp_path / "pid").is_file)
        stage = int((tmp_path / "pid").read_text())
        assert alive(stage)
    finally:
        runner_process.kill()
        runner_process.wait()
    assert wait_for(lambda: not alive(stage)), f"stage {stage} outlived its runner"
    assert (tmp_path / "ended").read_text() == str(int(signal.SIGTERM))


def test_the_last_max_steps_given_is_the_fits_step_budget(tmp_path: Path) -> None:
    """As in LightningCLI, the last ``--trainer.max_steps`` wins, and the last config that sets it when none is
    given (the whole run's ETA counts this budget)."""
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("trainer: {max_steps: 100}\n")
    second.write_text("trainer: {max_steps: 300}\n")
    folder = tmp_path / "fit"
    assert fit_stage("s", folder, [first, second], Path("d")).step_budget() == 300
    assert fit_stage("s", folder, [second, first], Path("d")).step_budget() == 100
    flags = fit_stage(
        "s", folder, [first], Path("d"), extra=["--trainer.max_steps", "5"], overrides=["--trainer.max_steps", "9"]
    )
    assert flags.step_budget() == 9
    mixed = [
        fit_stage("s", folder, [], Path("d"), extra=[first_flag], overrides=second_flag)
        for first_flag, second_flag in (
            ("--trainer.max_steps=5", ["--trainer.max_steps", "9"]),
            ("--config=" + str(second), ["--config", str(first)]),
        )
    ]
    assert mixed[0].step_budget() == 9  # the last one given, whichever way each is written
    assert mixed[1].configs == [second, first] and mixed[1].step_budget() == 100  # the last config sets it


def test_one_device_on_each_of_two_nodes_is_two_processes_under_ddp() -> None:
    """The strategy follows the process count, devices x nodes (1 x 2 = 2: ddp), not the devices per node."""
    assert Processes(1, 2).count == 2
    expected = ["--trainer.devices", "1", "--trainer.num_nodes", "2", "--trainer.strategy", "ddp"]
    assert Processes(1, 2).trainer_args(fit=False) == expected
    assert Processes(1, 1).trainer_args(fit=False)[-2:] == ["--trainer.strategy", "auto"]
    assert Processes(2, 1).trainer_args(fit=False)[-2:] == ["--trainer.strategy", "ddp"]
    assert Processes(1, 2, strategy="fsdp").trainer_args(fit=False)[-1] == "fsdp"


# ------------------------------------------------------------ variation pass (issue 34 item 6): options and inputs
def test_configs_are_read_from_every_spelling_of_the_config_flag(tmp_path: Path) -> None:
    """``-c X``, ``--config X`` and ``--config=X``, args then overrides, in order."""
    stage = Stage("s", tmp_path, ("fit", "-c", "a.yaml", "--config=b.yaml"), ("--config", "c.yaml"))
    assert stage.configs == [Path("a.yaml"), Path("b.yaml"), Path("c.yaml")]


def test_only_a_fit_has_a_step_budget_and_an_unreadable_one_is_none(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("trainer: {max_steps: 40}\n")
    # a prediction with a max_steps in its flags or its config (segmentation_wsss.yaml has one) is not a fit
    assert Stage("p", tmp_path, ("predict", "--trainer.max_steps", "5")).step_budget() is None
    assert Stage("p", tmp_path, ("predict", "--config", str(config))).step_budget() is None
    assert Stage("f", tmp_path, ("fit", "--config", str(config))).step_budget() == 40
    assert Stage("f", tmp_path, ("fit", "--trainer.max_steps", "0")).step_budget() is None  # 0: no budget
    assert Stage("f", tmp_path, ("fit", "--trainer.max_steps", "1")).step_budget() == 1
    assert Stage("f", tmp_path, ("fit", "--trainer.max_steps", "null")).step_budget() is None
    for text in ("[1, 2]\n", "model: {}\n", "trainer: {max_steps: null}\n", ""):
        config.write_text(text)  # a list, no trainer, a null, an empty file: no budget, no error
        assert Stage("f", tmp_path, ("fit", "--config", str(config))).step_budget() is None


def test_a_fit_stage_puts_extra_before_and_init_after_its_folder(tmp_path: Path) -> None:
    stage = fit_stage(
        "s",
        tmp_path / "f",
        [Path("a.yaml"), Path("b.yaml")],
        Path("root"),
        extra=["--x", "1"],
        init=["--seed_everything", "3"],
        overrides=["--y", "2"],
        inputs=[tmp_path / "in"],
        max_steps=11,
    )
    assert stage.args == (
        "fit",
        "--config",
        "a.yaml",
        "--config",
        "b.yaml",
        "--data.root",
        "root",
        "--x",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path / "f"),
        "--seed_everything",
        "3",
    )
    assert (stage.overrides, stage.inputs, stage.resume, stage.max_steps) == (
        ("--y", "2"),
        (tmp_path / "in",),
        True,
        11,
    )
    masks = predict_stage("m", tmp_path / "m", [], Path("root"), Path("c.ckpt"), extra=["--z"], inputs=[tmp_path])
    assert masks.args[:5] == ("predict", "--data.root", "root", "--z", "--ckpt_path")
    assert (masks.resume, masks.inputs) == (False, (tmp_path,))


@pytest.mark.parametrize(("fit", "expected"), [(True, ["--trainer.sync_batchnorm", "false"]), (False, [])])
def test_sync_batchnorm_false_is_written_for_a_fit(fit: bool, expected: list[str]) -> None:
    """False is a choice (the config's may be true), not "unset": a fit gets ``--trainer.sync_batchnorm false``."""
    assert Processes(2, 1, sync_batchnorm=False).trainer_args(fit=fit)[6:] == expected
    assert Processes(2, 1).trainer_args(fit=True)[6:] == []


def test_the_batch_recipe_is_split_over_devices_times_nodes_from_the_first_config(tmp_path: Path) -> None:
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("data: {batch_size: 8}\nmodel: {init_args: {lr: 0.01}}\n")
    second.write_text("data: {batch_size: 16}\nmodel: {init_args: {lr: 0.02}}\n")
    stage = fit_stage("s", tmp_path / "f", [first, second], Path("d"))
    words = Runner(executable=("epspp",), processes=Processes(1, 2)).argv(stage)
    assert words[words.index("--data.batch_size") + 1] == "4"  # 8 over 1 device x 2 nodes
    assert words[words.index("--model.init_args.lr") + 1] == "0.01"


def test_the_eta_of_a_fit_past_its_budget_counts_no_negative_time() -> None:
    # step 120 of 100: nothing left of this fit (not -10 s), then 200 steps at 4/s
    assert whole_run_eta({"step": 120, "max_steps": 100, "steps_per_s": 2.0}, 4.0, [200]) == (50.0, 0)


def test_a_marker_with_the_fits_old_checkpoint_flag_is_the_same_command(tmp_path: Path) -> None:
    """An older epspp recorded a fit's ``--ckpt_path last`` (anywhere, either spelling): still up to date; in a
    stage that does not resume, the flag is part of the command."""
    fit = fit_stage("s", tmp_path, [], Path("d"), overrides=["--o", "1"])
    for flag in (["--ckpt_path", "last"], ["--ckpt_path=last"]):
        old = ["epspp", *fit.args, *flag, *fit.overrides]
        assert Runner().why_again(fit, {"command": old}) is None
    assert Runner().why_again(fit, {"command": ["epspp", *fit.args, "--ckpt_path", "last"]}) == "its command changed"
    tool = Stage("t", tmp_path, ("prepare", "x"))
    assert Runner().why_again(tool, {"command": ["epspp", "prepare", "x", "--ckpt_path", "last"]}) is not None


def done_before(tmp_path: Path) -> list[Stage]:
    """``two_stages`` with the markers of a finished, up-to-date run written by hand (nothing to run)."""
    stages = two_stages(tmp_path)
    for stage, marker in zip(
        stages,
        (
            {"command": stages[0].command, "id": "A", "inputs": {}},
            {"command": stages[1].command, "id": "B", "inputs": {str(stages[0].folder): "A"}},
        ),
        strict=True,
    ):
        stage.folder.mkdir(parents=True)
        (stage.folder / "stage.json").write_text(json.dumps(marker))
    return stages


@pytest.mark.parametrize("quiet", [False, True])
def test_a_quiet_runner_says_nothing(tmp_path: Path, quiet: bool) -> None:
    stages = done_before(tmp_path)
    out = io.StringIO()
    records = Runner(tag="t", quiet=quiet, out=out).run(stages)
    assert [record["ran"] for record in records.values()] == [False, False]
    assert (out.getvalue() == "") is quiet
    assert quiet or out.getvalue().startswith("[t] 2 stages, 0 to run, 2 done before\n[t] first: done before, skipping")


def test_a_finished_stage_after_an_input_that_will_run_is_planned_to_run(tmp_path: Path) -> None:
    """Before anything runs, the plan counts a finished, up-to-date stage whose input stage runs again (its marker
    still names the input's old id, so only the plan's own record of what runs can tell)."""
    stages = done_before(tmp_path)
    changed = two_stages(tmp_path, first=("--size", "2"))  # the first stage's command changed; markers unchanged
    assert Runner().plan(changed) == [True, True]
    elsewhere = [changed[0], Stage("second", stages[1].folder, stages[1].args, inputs=(tmp_path / "other",))]
    (tmp_path / "other").mkdir()
    (stages[1].folder / "stage.json").write_text(
        json.dumps({"command": stages[1].command, "id": "B", "inputs": {str(tmp_path / "other"): None}})
    )
    assert Runner().plan(elsewhere) == [True, False]  # a stage that reads another folder is not swept along


def test_a_marker_that_is_not_an_object_is_no_marker(tmp_path: Path) -> None:
    stages = done_before(tmp_path)
    assert Runner().plan(stages) == [False, False]
    (stages[1].folder / "stage.json").write_text("[1, 2]\n")
    assert Runner().plan(stages) == [False, True]


def test_the_runner_shows_the_default_executable_as_epspp(tmp_path: Path) -> None:
    stage = Stage("t", tmp_path, ("prepare", "synthetic", "--root", "a b"))
    assert Runner().shown(stage) == "epspp prepare synthetic --root 'a b'"
    assert Runner(executable=("/x/python", "-m", "epspp")).shown(stage).startswith("/x/python -m epspp prepare ")


def test_each_stage_counts_only_the_budgets_of_the_stages_after_it_that_run(tmp_path: Path) -> None:
    """The whole run's ETA of a stage adds the step budgets of the later stages that will run (a finished fit is
    not counted); the runner hands them to each stage's poll."""
    stages = [
        fit_stage("one", tmp_path / "one", [], Path("d"), max_steps=100),
        predict_stage("masks", tmp_path / "masks", [], Path("d"), Path("c.ckpt")),
        fit_stage("three", tmp_path / "three", [], Path("d"), max_steps=200),
        fit_stage("four", tmp_path / "four", [], Path("d"), max_steps=50),
    ]
    (tmp_path / "three").mkdir()
    (tmp_path / "three" / "stage.json").write_text(json.dumps({"command": stages[2].command, "inputs": {}}))
    run = Runner(quiet=True)
    to_come: dict[str, list] = {}

    def run_stage(stage: Stage, poll: Callable[[], None]) -> dict:
        to_come[stage.name] = poll.args[2]  # type: ignore[attr-defined]  (functools.partial(_eta, eta, stage, ...))
        return {}

    run.run_stage = run_stage  # type: ignore[method-assign]
    run.run(stages)
    assert to_come == {"one": [None, 50], "masks": [50], "three": [50], "four": []}


def test_only_a_fits_measured_rate_gives_the_whole_run_eta_once(tmp_path: Path) -> None:
    """A prediction's progress.json, or a fit's before it measured a rate, says nothing; a fit's says it once:
    35 s left of it + 200 steps to come at its 2 steps/s = 2 min 15 s."""
    from epspp.chain import _Eta
    from epspp.runs.progress import write_progress

    fit = fit_stage("one", tmp_path / "one", [], Path("d"), max_steps=100)
    masks = predict_stage("masks", tmp_path / "masks", [], Path("d"), Path("c.ckpt"))
    record = {"step": 30, "max_steps": 100, "steps_per_s": 2.0, "eta_s": 35.0}
    write_progress(masks.folder, record)
    write_progress(fit.folder, record | {"steps_per_s": 0.0, "eta_s": None})
    out = io.StringIO()
    run, eta = Runner(tag="t", out=out), _Eta()
    run._eta(eta, masks, [200])
    run._eta(eta, fit, [200])
    assert out.getvalue() == "" and eta.rate is None
    write_progress(fit.folder, record)
    run._eta(eta, fit, [200])
    run._eta(eta, fit, [200])
    assert out.getvalue() == (
        "[t] whole run: about 2 min 15 s left (an estimate: 1 fit(s) to come at one's 2.00 steps/s)\n"
    )
