"""The study runner's context: a labelled split added to a user's root is named for the study."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_labelled_split_added_to_a_users_root_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from epspp.study.runner import Context, labeled_split

    root = tmp_path / "mine"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"img{i}\n" for i in range(10)))
    assert not Context(tmp_path / "study", root, tmp_path, [], {}).owns_root
    assert Context(tmp_path, root, tmp_path, [], {}).owns_root
    assert labeled_split(root, 0.2, own_root=False) == "labeled_study_0.2"
    written = (root / "ImageSets" / "Segmentation" / "labeled_study_0.2.txt").read_text().split()
    assert len(written) == 2 and set(written) <= {f"img{i}" for i in range(10)}
    assert "note: adding the labelled split" in capsys.readouterr().out
    labeled_split(root, 0.2, own_root=False)  # there already: no second note
    assert capsys.readouterr().out == ""


def test_run_all_runs_jobs_side_by_side_and_reports_each_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import threading

    from epspp.study.runner import run_all

    def job(name: str, both_started: threading.Barrier) -> dict:
        both_started.wait()  # two jobs must run at once, or the barrier breaks
        return {"name": name}

    together = threading.Barrier(2, timeout=10)

    (tmp_path / "b.json").write_text("{}")  # b's result file exists: reported as done before
    jobs = [(n, tmp_path / f"{n}.json", lambda n=n: job(n, together)) for n in "ab"]
    assert run_all(jobs, parallel=2) == {"a": {"name": "a"}, "b": {"name": "b"}}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and {line.split(":")[0].split(" ", 2)[2] for line in lines} == {"a", "b"}
    assert any(line.startswith("[study] ") and " b: done before;" in line for line in lines)
    with pytest.raises(threading.BrokenBarrierError):  # one at a time: the barrier never fills
        alone = threading.Barrier(2, timeout=0.5)
        run_all([(n, tmp_path / f"{n}.x", lambda n=n: job(n, alone)) for n in "cd"], parallel=1)


class Stop(Exception):
    """Raised by a stand-in runner: the stages are all the test needs."""


def test_a_training_on_the_datasets_own_saliency_and_the_error_flags_of_the_ird_arms(tmp_path: Path) -> None:
    from epspp.study.grid import Training, has_ird
    from epspp.study.runner import DATASET_SALIENCY, Context, localization

    ctx = Context(tmp_path / "out", tmp_path / "data", tmp_path, [], {}, saliency_errors=True)
    assert ctx.saliency_dir(DATASET_SALIENCY) == tmp_path / "data" / "saliency"  # no variant folder
    assert ctx.saliency_dir("clean") == tmp_path / "out" / "saliency" / "data" / "clean"
    assert [has_ird(m) for m in ("cam", "eps", "eps++", "eps++/softmax")] == [False, False, True, True]
    seen = {}

    def run(stages: list) -> None:
        seen["args"] = [list(stage.args) for stage in stages]
        raise Stop

    ctx.runner.run = run  # type: ignore[method-assign]
    for method, flagged in (("eps++/softmax", True), ("eps", False)):
        with pytest.raises(Stop):
            localization(ctx, Training("scratch", method, DATASET_SALIENCY, 0))
        fit, *predicts = seen["args"]
        assert all(str(tmp_path / "data" / "saliency") in args for args in seen["args"])
        assert ("--data.saliency_errors" in fit) == flagged
        if flagged:
            assert fit[fit.index("--data.saliency_errors") + 1] == "true"
        assert all("--data.saliency_errors" not in args for args in predicts)  # training batches only
