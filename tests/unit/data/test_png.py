"""Masks read by ``epspp.data.png`` (8-bit, unfiltered) or PIL (any other PNG): same pixels, same errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from epspp.data.io import DatasetError, read_mask_pixels, write_mask_png
from epspp.data.png import decode_unfiltered, plain_index_png


def _mask(height: int = 5, width: int = 9) -> np.ndarray:
    """Non-square, with 255 and every value of a row differing from its neighbours (filters would pay)."""
    mask = (np.arange(height * width).reshape(height, width) * 37 % 23).astype(np.uint8)
    mask[0, 0], mask[-1, -1] = 255, 21
    return mask


def test_a_palette_mask_gives_its_indices_not_its_colours(tmp_path: Path) -> None:
    mask = _mask()
    palette = np.zeros((256, 3), np.uint8)  # every index drawn black: colours would all be 0
    write_mask_png(tmp_path / "m.png", mask, palette)
    data = (tmp_path / "m.png").read_bytes()
    assert plain_index_png(data) == (9, 5)
    fast = decode_unfiltered(data, 9, 5)
    assert fast is not None and fast.tolist() == mask.tolist()  # PIL's palette PNG: the fast path
    assert read_mask_pixels(tmp_path / "m.png").tolist() == mask.tolist()


@pytest.mark.parametrize("writer", ["pil_grey", "cv2_grey", "pil_palette_1bit"])
def test_other_pngs_fall_back_to_pil_with_the_same_pixels(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "m.png"
    mask = _mask(6, 11)
    if writer == "pil_grey":
        Image.fromarray(mask, mode="L").save(path)
    elif writer == "cv2_grey":  # libpng's adaptive filters: Sub / Up / Average / Paeth rows
        assert cv2.imwrite(str(path), np.tile(np.arange(11, dtype=np.uint8) * 20, (6, 1)) + mask)
        mask = np.tile(np.arange(11, dtype=np.uint8) * 20, (6, 1)) + mask
    else:
        mask = (mask % 2).astype(np.uint8)
        Image.fromarray(mask, mode="P").save(path, bits=1)
    assert read_mask_pixels(path).tolist() == np.asarray(Image.open(path)).tolist() == mask.tolist()
    if writer == "cv2_grey":
        data = path.read_bytes()
        assert decode_unfiltered(data, *plain_index_png(data)) is None  # filtered rows: PIL decodes


def test_a_truncated_or_oversized_mask_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mask_png(tmp_path / "m.png", _mask())
    data = (tmp_path / "m.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) - 20])
    with pytest.raises(DatasetError, match=r"cannot read mask .*cut\.png: .*truncated"):
        read_mask_pixels(tmp_path / "cut.png")
    monkeypatch.setenv("EPSPP_MAX_PIXELS", "44")
    with pytest.raises(DatasetError, match=r"m\.png has more than 44 pixels .*\(9x5\)"):
        read_mask_pixels(tmp_path / "m.png")
    with pytest.raises(DatasetError, match=r"mask .*nothere\.png not found"):
        read_mask_pixels(tmp_path / "nothere.png")


def test_the_header_is_read_from_its_33rd_byte_and_a_chunk_from_its_8th(tmp_path: Path) -> None:
    """The signature (8 bytes) and the IHDR chunk (4 + 4 + 13 + 4) end at byte 33: 33 bytes name the size, 32 do
    not. A chunk's length and type are its first 8 bytes: an IEND cut after them is named (boundary sweep)."""
    write_mask_png(tmp_path / "m.png", _mask())
    data = (tmp_path / "m.png").read_bytes()
    assert data[-12:-4] == b"\x00\x00\x00\x00IEND"  # the last chunk: length 0, type, CRC
    assert plain_index_png(data[:33]) == (9, 5)
    assert plain_index_png(data[:32]) is None
    cut = len(data) - 12
    with pytest.raises(ValueError, match=rf"chunk b'IEND' at byte {cut} runs past the end of the file"):
        decode_unfiltered(data[:-4], 9, 5)  # its length and type there, its CRC cut
    with pytest.raises(ValueError, match="no IEND chunk"):
        decode_unfiltered(data[:-5], 9, 5)  # 7 bytes of it: not a chunk header
