"""Weight files: PyTorch state dicts and Lightning checkpoints (read safely), MXNet ``.params`` without mxnet.

The MXNet NDArray-list format (``src/ndarray/ndarray.cc``): uint64 magic 0x112, uint64 reserved, uint64
count, then each array, then uint64 count and each name (uint64 length + bytes).  An array starts with a
uint32: the V2 magic 0xF993fac9 (then int32 storage type, an int64-dims shape, context, dtype, data), the V1
magic 0xF993fac8 (int64-dims shape, context, dtype, data), or, in the legacy layout, the number of dimensions
itself followed by uint32 dims.  A shape is int32 ndim + ndim dims; a context int32 device type + int32 id;
the dtype an int32 flag (0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64); the data is
little-endian and contiguous.
"""

from __future__ import annotations

import math
import pickle
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from epspp.errors import EPSError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


class WeightsError(EPSError):
    """A weight file that cannot be read, or whose names or shapes do not fit the network."""


class _Reader:
    """Little-endian reads from a bytes buffer that fail with the file's name instead of struct errors."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    @property
    def left(self) -> int:
        """Bytes not read yet."""
        return len(self.data) - self.pos

    def fail(self, detail: str) -> WeightsError:
        """The one-line error of a damaged file, ``detail`` saying what did not fit."""
        return WeightsError(f"{self.path} is truncated or not an MXNet .params file ({detail}); download it again")

    def take(self, size: int) -> bytes:
        if size > self.left:
            raise self.fail(f"read past its {len(self.data)} bytes")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def count(self, what: str, each: int) -> int:
        """A uint64 count of items of at least ``each`` bytes, refused when the bytes left cannot hold them."""
        (value,) = self.unpack("Q")
        if value * each > self.left:
            raise self.fail(f"{what} {value} needs more than the {self.left} bytes left")
        return value


def _read_shape(reader: _Reader, magic: int) -> tuple[int, ...]:
    """V1/V2: int32 ndim + int64 dims; legacy: ``magic`` is ndim, then uint32 dims.  Negative dims are refused."""
    if magic in (V1_MAGIC, V2_MAGIC):
        (ndim,) = reader.unpack("i")
        kind = "q"
    elif magic <= 32:
        ndim, kind = magic, "I"
    else:
        raise WeightsError(f"{reader.path}: unknown array header {magic:#x}; not an MXNet .params file")
    if ndim < 0 or ndim * struct.calcsize(kind) > reader.left:
        raise reader.fail(f"an array of {ndim} dimensions at byte {reader.pos}")
    shape = reader.unpack(f"{ndim}{kind}")
    if any(dim < 0 for dim in shape):
        raise reader.fail(f"array shape {shape} has a negative dimension {min(shape)}")
    return shape


def _read_array(reader: _Reader) -> np.ndarray:
    (magic,) = reader.unpack("I")
    if magic == V2_MAGIC:
        (storage,) = reader.unpack("i")
        if storage != 0:
            raise WeightsError(
                f"{reader.path} holds a sparse array (storage type {storage}); only dense arrays are supported"
            )
    shape = _read_shape(reader, magic)
    if not shape:
        return np.zeros((0,), np.float32)
    reader.unpack("ii")  # context: device type, device id
    (flag,) = reader.unpack("i")
    if flag not in DTYPES:
        raise WeightsError(f"{reader.path}: unknown MXNet dtype flag {flag}")
    dtype = np.dtype(DTYPES[flag]).newbyteorder("<")
    size = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if size > reader.left:
        raise reader.fail(f"an array of shape {shape} ({dtype.name}) needs more bytes than the {reader.left} left")
    array = np.frombuffer(reader.take(size), dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_mxnet_params(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of an MXNet ``.params`` file by name (``arg:...`` / ``aux:...`` as saved), read with numpy only.

    Every count and size is checked against the bytes left in the file, so damaged files fail in one line
    (``WeightsError``) without reading or allocating beyond the file's size.
    """
    path = Path(path)
    reader = _Reader(path.read_bytes(), path)
    header, _reserved = reader.unpack("QQ")
    if header != LIST_MAGIC:
        raise WeightsError(f"{path} is not an MXNet .params file (header {header:#x}, expected {LIST_MAGIC:#x})")
    count = reader.count("array count", 4)  # an array is at least its uint32 header
    arrays = [_read_array(reader) for _ in range(count)]
    names = []
    for _ in range(reader.count("name count", 8)):  # a name is at least its uint64 length
        raw = reader.take(reader.count("name length", 1))
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise reader.fail(f"array name {raw[:40]!r} is not UTF-8") from None
    if len(names) != len(arrays):
        raise WeightsError(f"{path} has {len(arrays)} arrays but {len(names)} names; not a named parameter file")
    return dict(zip(names, arrays, strict=True))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file: MXNet ``.params`` (names as saved), or a PyTorch file loaded with
    ``weights_only=True`` (a plain state dict, or one nested under ``state_dict`` / ``model``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist (README, 'Files you need', says where to get it)")
    if path.suffix == ".params":
        return {name: torch.from_numpy(array) for name, array in read_mxnet_params(path).items()}
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise WeightsError(
            f"cannot read {path} as PyTorch weights ({str(error).splitlines()[0]}); "
            "is it truncated, or not a state dict?"
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path} holds no state dict of tensors")
    return dict(loaded)


def _listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_checked(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    source: str | Path,
    optional: Iterable[str] = ("num_batches_tracked",),
) -> None:
    """``module.load_state_dict(state)`` that fails with one line naming the keys that do not fit.

    Args:
        module: the network to fill.
        state: tensors by the module's parameter names (already mapped and filtered).
        source: the file they came from, for the message.
        optional: suffixes of keys that either side may lack (BatchNorm counters, absent in frozen BatchNorm).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(tuple(optional))]
    unexpected = [k for k in state if k not in expected and not k.endswith(tuple(optional))]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listing(wrong, 4)}")
    if problems:
        raise WeightsError(
            f"{source} does not fit the {type(module).__name__} network: "
            + "; ".join(problems)
            + ". Check that the file is the one the config names"
        )
    kept = {k: v for k, v in state.items() if k in expected}
    module.load_state_dict({**{k: v for k, v in expected.items() if k not in kept}, **kept}, strict=True)
