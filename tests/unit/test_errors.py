"""Issue 21, item 13: images far beyond any real size, empty or non-mapping configs, an empty WANDB_MODE."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epspp.cli import main
from epspp.cli.check import check_main
from epspp.data.io import DatasetError, read_image


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header announces ``width`` x ``height`` RGB pixels (a few bytes of data: a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_an_image_beyond_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    _png_header(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(DatasetError, match=r"bomb\.png has more than 134217728 pixels"):
        read_image(tmp_path / "bomb.png")


def test_the_pixel_limit_is_an_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "small.png")
    assert read_image(tmp_path / "small.png").shape == (40, 30, 3)
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "1000")
    pil_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DatasetError, match=r"small\.png has more than 1000 pixels"):
        read_image(tmp_path / "small.png")
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # PIL's own limit, for every other reader, is left as it was
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "lots")
    with pytest.raises(DatasetError, match="EPSPP_MAX_PIXELS='lots'"):
        read_image(tmp_path / "small.png")


def test_epspp_check_applies_max_pixels(
    synthetic_copy: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EPSPP_MAX_PIXELS", raising=False)
    assert check_main(["--data.root", str(synthetic_copy), "--splits", "val"]) == 0
    assert check_main(["--data.root", str(synthetic_copy), "--splits", "val", "--max-pixels", "100"]) == 2
    assert "has more than 100 pixels" in capsys.readouterr().out
    os.environ.pop("EPSPP_MAX_PIXELS", None)  # check_main set it for this process


@pytest.mark.parametrize(
    ("text", "what"), [("", "is empty"), ("# only a comment\n", "is empty"), ("- trainer\n- model\n", "holds a list")]
)
def test_a_config_that_is_not_a_mapping_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, what: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"epspp: error: config file {config} {what}: expected a mapping of" in err and "Traceback" not in err


def test_an_empty_wandb_mode_means_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(tmp_path / "empty.yaml")])
    assert os.environ["WANDB_MODE"] == "offline"


def test_an_id_too_long_for_a_temporary_name_is_refused_naming_it(tmp_path: Path) -> None:
    from epspp.data.io import MAX_ID_BYTES, read_split

    splits = tmp_path / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    long_id = "x" * 240
    (splits / "train.txt").write_text(f"ok\n{long_id}\n")
    with pytest.raises(DatasetError, match=r"train\.txt line 2: id 'xxxx.*is 240 bytes long.*255-byte"):
        read_split(tmp_path, "train")
    (splits / "train.txt").write_text("ok\n" + "y" * MAX_ID_BYTES + "\n")  # the longest id whose names fit
    ids = read_split(tmp_path, "train")
    assert (tmp_path / f".{ids[1]}.{4194304}.tmp.png").touch() is None  # the writers' temporary name works


# ------------------------------------------------------------ variation pass (issue 34 item 6): epspp.errors itself
def test_reading_turns_each_damaged_file_error_into_one_line(tmp_path: Path) -> None:
    import errno
    import zipfile

    from epspp.errors import EPSError, reading

    path = tmp_path / "s.npy"
    cases = [
        (OSError(errno.EIO, os.strerror(errno.EIO)), "Input/output error"),  # the system's words
        (EOFError(), "EOFError"),  # no words at all: its type
        (ValueError("bad\n  header"), "bad header"),  # one line
        (zipfile.BadZipFile("File is not a zip file"), "File is not a zip file"),
    ]
    for raised, reason in cases:
        with pytest.raises(DatasetError) as error, reading(path, "score map"):
            raise raised
        assert str(error.value) == f"cannot read score map {path}: {reason}"
    with pytest.raises(DatasetError) as error, reading(path, "score map", "predict it again"):
        raise EOFError("truncated")
    assert str(error.value) == f"cannot read score map {path}: truncated: predict it again"
    with pytest.raises(DatasetError) as error, reading(path):
        raise ValueError("x")
    assert str(error.value) == f"cannot read file {path}: x"  # the default name of what is read
    own = EPSError("already one line")
    with pytest.raises(EPSError) as error, reading(path):
        raise own
    assert error.value is own  # passed unchanged
    with pytest.raises(KeyError), reading(path):
        raise KeyError("not a damaged file")


def test_an_output_errors_reason_defaults_to_its_message() -> None:
    from epspp.errors import ConfigError, EPSError, OutputError

    assert OutputError("cannot write x").reason == "cannot write x"
    assert OutputError("cannot write x: full", "full").reason == "full"
    assert issubclass(OutputError, EPSError) and issubclass(DatasetError, EPSError) and issubclass(EPSError, ValueError)
    assert issubclass(ConfigError, EPSError)
