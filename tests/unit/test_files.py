"""epspp.files: outputs written whole or not at all; a full disk is one line naming the file, nothing half-written
is left (checkpoints included, whose full disk torch reports as its own RuntimeError)."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import epspp.tasks.checkpoint as checkpoint_module
from epspp.errors import OutputError
from epspp.files import write_atomic, write_failure, write_json
from epspp.tasks.checkpoint import atomic_torch_save

BIG = {"weights": torch.arange(50_000, dtype=torch.float32)}  # 200 kB: more than the small disks below hold


class FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes: the write that crosses it fails with ENOSPC."""

    room = 4096

    def write(self, data: Any) -> int:
        if self.tell() + len(memoryview(data)) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_earlier_one_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    monkeypatch.setattr(checkpoint_module, "open", lambda name, mode: FullDisk(name, mode), raising=False)
    with pytest.raises(OutputError) as error:
        atomic_torch_save(BIG, path)
    assert str(error.value) == (
        f"cannot save checkpoint {path}: No space left on device: free space or choose another folder (the "
        "previous file is kept)"
    )
    assert os.listdir(tmp_path) == ["last.ckpt"]
    assert torch.load(path) == {"step": 1}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only; skipped where mounting is not permitted)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # also while a file is open


def test_a_real_full_disk_while_saving_a_checkpoint_or_json(small_disk: Path) -> None:
    path = small_disk / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    with pytest.raises(OutputError, match=rf"^cannot save checkpoint {path}: No space left on device: "):
        atomic_torch_save(BIG, path)  # torch.save(obj, a path) would raise RuntimeError('... unexpected pos ...')
    report = small_disk / "report.json"
    with pytest.raises(OutputError, match=rf"^cannot write --json {report}: No space left on device: "):
        write_json(report, {"values": list(range(40_000))}, "write --json")
    assert os.listdir(small_disk) == ["last.ckpt"]
    assert torch.load(path) == {"step": 1}


def test_any_failure_removes_the_temporary_and_only_filesystem_errors_become_one_line(tmp_path: Path) -> None:
    target = tmp_path / "out" / "mask.png"

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert os.listdir(tmp_path / "out") == []
    write_atomic(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert os.listdir(tmp_path / "out") == ["mask.png"] and target.read_bytes() == b"whole"
    # torch's writer names no OSError: still a write failure; an unrelated RuntimeError is not
    assert write_failure(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"))
    assert write_failure(RuntimeError("CUDA out of memory")) is None
    assert write_failure(ValueError("bad value")) is None


def test_a_read_only_disk_is_one_line_too(small_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    report = small_disk / "report.json"
    with pytest.raises(OutputError, match=rf"^cannot write --json {report}: Read-only file system: "):
        write_json(report, {"miou": 0.0}, "write --json")  # its temporary cannot be removed either: never made


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_the_temporary_name_keeps_the_stem_and_the_suffix(tmp_path: Path) -> None:
    import threading

    from epspp.files import temporary_name

    tid = threading.get_native_id()
    assert temporary_name(tmp_path / "a.b.png") == tmp_path / f".a.b.{tid}.tmp.png"
    assert temporary_name(tmp_path / "README") == tmp_path / f".README.{tid}.tmp"


def test_advice_and_the_reason_of_a_failed_write(tmp_path: Path) -> None:
    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError) as error:
        write_atomic(tmp_path / "f.json", full, "save report", advice="pass --out elsewhere")
    assert (
        str(error.value) == f"cannot save report {tmp_path / 'f.json'}: No space left on device: pass --out elsewhere"
    )
    assert error.value.reason == "No space left on device"


def test_a_filesystem_error_behind_another_is_found_and_named() -> None:
    try:
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        except OSError as inner:
            raise RuntimeError("the writer failed") from inner
    except RuntimeError as outer:
        assert write_failure(outer) == "Read-only file system"
    assert write_failure(OSError("disk gone")) == "disk gone"  # no strerror: its text
    assert write_failure(OSError()) == "OSError"  # nothing at all: its type


@pytest.mark.parametrize("sync", [False, True])
def test_sync_flushes_the_file_and_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda handle: synced.append(handle))
    write_atomic(tmp_path / "x.ckpt", lambda tmp: tmp.write_bytes(b"x"), sync=sync)
    assert len(synced) == (2 if sync else 0) and (tmp_path / "x.ckpt").read_bytes() == b"x"


def test_json_indent_away_from_its_default(tmp_path: Path) -> None:
    assert write_json(tmp_path / "a.json", {"a": [1]}).read_text() == '{\n  "a": [\n    1\n  ]\n}'
    assert write_json(tmp_path / "b.json", {"a": [1]}, indent=None).read_text() == '{"a": [1]}'
