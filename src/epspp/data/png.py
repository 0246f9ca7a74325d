"""The stored bytes of the commonest mask PNG, decoded without PIL: 8-bit palette or grey, not interlaced, every
row unfiltered (what PIL writes for palette masks). Its pixels are the zlib stream's rows less their filter byte,
so one ``zlib.decompress`` gives the class indices (a palette PNG's indices, not its colours)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, PALETTE = 0, 3  # the PNG colour types PIL opens as mode "L" and "P"


def plain_index_png(data: bytes) -> tuple[int, int] | None:
    """(width, height) when ``data`` is an 8-bit grey or palette PNG, not interlaced; else None."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or colour not in (GREY, PALETTE) or (compression, filtering, interlace) != (0, 0, 0):
        return None
    return width, height


def decode_unfiltered(data: bytes, width: int, height: int) -> np.ndarray | None:
    """The (H, W) uint8 pixels of a PNG that ``plain_index_png`` accepted, if every row is unfiltered; else None.

    Raises:
        ValueError: the chunks or the zlib stream are damaged, or the stream does not hold H rows of W pixels.
    """
    idat, pos = [], 8
    while pos + 8 <= len(data):
        (size,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        if pos + 12 + size > len(data):
            raise ValueError(f"chunk {kind!r} at byte {pos} runs past the end of the file (truncated?)")
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + size])
        elif kind == b"IEND":
            break
        pos += 12 + size
    else:
        raise ValueError("no IEND chunk (truncated?)")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as error:
        raise ValueError(f"damaged image data: {error}") from None
    if len(raw) != height * (width + 1):
        raise ValueError(f"image data holds {len(raw)} bytes, not {height} rows of 1 + {width}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    return rows[:, 1:] if not rows[:, 0].any() else None
