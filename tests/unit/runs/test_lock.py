"""One run at a time in a run folder (epspp.runs.lock): a second holder is refused in one line naming the folder and
the holder's pid and command; a killed holder leaves nothing stuck; DDP's other ranks take no lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from jsonargparse import Namespace

from epspp.errors import OutputError
from epspp.files import temporary_name
from epspp.runs.folder import prepare_run
from epspp.runs.lock import hold_folder, release_folders
from epspp.runs.ownership import claim_folder

HOLDER = (
    "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
    "print('held', flush=True); time.sleep(60)"
)


def test_a_held_folder_is_refused_until_its_holder_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(OutputError) as error:
            hold_folder(folder, "--trainer.default_root_dir")
        command = f"{sys.executable} -c {HOLDER} {folder}"[:200]  # (a long command is cut at 200 characters)
        assert str(error.value) == (
            f"--trainer.default_root_dir {folder} is in use by another run (pid {holder.pid}: {command}): wait for "
            "it to end, or choose another --trainer.default_root_dir"
        )
    finally:
        holder.kill()  # SIGKILL: the kernel releases its lock
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    hold_folder(folder, "--trainer.default_root_dir")
    hold_folder(folder, "--trainer.default_root_dir")  # re-entrant in one process
    other = os.open(folder, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):  # held: another open description of the folder cannot take it
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release_folders()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(other)
    assert sorted(folder.iterdir()) == []  # no lock file left in the run folder


def test_a_file_in_place_of_the_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("mine")
    with pytest.raises(OutputError, match=f"^--out {tmp_path / 'run'} is a file: give a folder$"):
        hold_folder(tmp_path / "run", "--out")


def config(run: Path, data: Path) -> Namespace:
    return Namespace(
        trainer=Namespace(default_root_dir=str(run), callbacks=[], logger=False), data=Namespace(root=str(data))
    )


@pytest.mark.parametrize(
    "rank",
    [
        {},
        {"LOCAL_RANK": "0", "RANK": "0"},
        {"LOCAL_RANK": "1"},
        {"LOCAL_RANK": "0", "RANK": "4"},
        {"SLURM_PROCID": "2"},
    ],
)
def test_only_the_first_process_of_the_run_takes_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: dict[str, str]
) -> None:
    """The other processes of the same run (DDP's local rank 1; a second node's first process, global rank 4 of
    torchrun or srun) pass a folder that is held (by rank 0, here by this test); rank 0 is refused while another
    holds it."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in rank.items():
        monkeypatch.setenv(name, value)
    held = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if set(rank.values()) - {"0"}:
            prepare_run(config(run, tmp_path / "data"), "validate")
        else:
            with pytest.raises(OutputError, match=f"--trainer.default_root_dir {run} is in use by another run"):
                prepare_run(config(run, tmp_path / "data"), "validate")
    finally:
        os.close(held)


def test_the_temporaries_of_a_killed_run_are_removed_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run that holds a folder the write rule gave it removes the temporary files of epspp's atomic writes that a
    killed process left; a running process's temporaries and every other file (the user's) stay; a folder that is
    not the command's is refused with nothing removed."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(dead.stdout)
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)

    def written_by(tid: int, name: str) -> str:
        """The temporary name ``epspp.files`` gives ``name`` in thread ``tid`` (the one writer of temporaries)."""
        return temporary_name(Path(name)).name.replace(f".{threading.get_native_id()}.", f".{tid}.")

    stale = [
        folder / written_by(gone, "config.yaml"),  # RunConfigDump, OutputRecord: .config.PID.tmp.yaml
        folder / written_by(gone, "stage.json"),
        folder / written_by(gone, "epspp.files.json"),  # a stem with dots
        folder / "checkpoints" / written_by(gone, "last.ckpt"),  # AtomicCheckpointIO
        folder / written_by(gone, "README"),  # no suffix
    ]
    kept = [
        folder / written_by(os.getpid(), "stage.json"),  # a running process's
        folder / "notes.tmp",
        folder / ".notes.tmp",
        folder / f"config.{gone}.tmp.yaml",  # not hidden: not epspp's
        folder / f".config.{gone}.tmp.yaml.bak",  # two suffixes: not a name epspp writes
        folder / f".config.x{gone}.tmp.yaml",  # not a thread id
    ]
    for path in stale + kept:
        path.write_text("x")
    with pytest.raises(OutputError, match="holds files that `epspp demo` did not write"):
        claim_folder(folder, "epspp demo", "--out")  # not the command's folder: nothing removed
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == sorted(stale + kept)
    (folder / "epspp_files.json").write_text('{"command": "epspp demo"}')
    kept.append(folder / "epspp_files.json")
    claim_folder(folder, "epspp demo", "--out")
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == sorted(kept)
    assert capsys.readouterr().err == (
        f"[epspp] removed 5 temporary file(s) that a killed run left in {folder}, e.g. {sorted(stale)[0]}\n"
    )


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_a_release_keeps_the_folders_the_calling_command_holds(tmp_path: Path) -> None:
    """A command run inside another (a demo's stage in its process) releases its own folders, not its caller's."""
    from epspp.runs.lock import held_folders

    outer, inner = tmp_path / "outer", tmp_path / "inner"
    hold_folder(outer, "--out")
    kept = held_folders()
    assert outer.resolve() in kept
    hold_folder(inner / ".." / "inner", "--trainer.default_root_dir")  # keyed by the resolved path
    assert held_folders() == kept | {inner.resolve()}
    release_folders(kept)
    assert held_folders() == kept
    other = os.open(inner, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the inner one is free
    finally:
        os.close(other)
    release_folders()
    assert held_folders() == set()


def test_only_epspps_temporary_names_of_ended_threads_go(tmp_path: Path) -> None:
    from epspp.runs.lock import TEMPORARY, remove_stale_temporaries

    assert TEMPORARY.fullmatch(".a.b.123.tmp.json")[1] == "123"  # a stem with a dot  # type: ignore[index]
    assert TEMPORARY.fullmatch(".README.7.tmp")[1] == "7"  # type: ignore[index]
    for name in (".a.x7.tmp.json", "a.7.tmp.json", ".a.7.tmp.tar.gz", ".a.7.tmp."):
        assert TEMPORARY.fullmatch(name) is None, name
    (tmp_path / "sub").mkdir()
    dead = tmp_path / "sub" / f".x.{2**22 + 12345}.tmp.png"  # above Linux's pid_max: never a running thread
    alive = tmp_path / f".x.{os.getpid()}.tmp.png"
    for path in (dead, alive):
        path.write_text("x")
    (tmp_path / f".link.{2**22 + 12345}.tmp").symlink_to(alive)  # a link is never removed
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert alive.is_file() and (tmp_path / f".link.{2**22 + 12345}.tmp").is_symlink()
