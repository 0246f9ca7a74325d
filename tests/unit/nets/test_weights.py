"""The MXNet ``.params`` reader against bytes assembled by hand and against random damage.

The byte fixture is written here with ``struct.pack``, field by field from apache/mxnet
``src/ndarray/ndarray.cc`` (``NDArray::Save`` / ``NDArray::Load`` / ``LegacyLoad``, list format
``kMXAPINDArrayListMagic``) and ``include/mxnet/tuple.h`` (``Tuple::Save``: int32 ndim, then the dims),
independently of the reader and of ``fixtures.helpers.write_mxnet_params``.  Type flags from mshadow's
``base.h``: kFloat32 0, kFloat64 1, kFloat16 2, kUint8 3, kInt32 4, kInt8 5, kInt64 6.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import write_mxnet_params

from epspp.nets.weights import WeightsError, read_mxnet_params

LIST_MAGIC = 0x112  # kMXAPINDArrayListMagic, uint64
V1_MAGIC, V2_MAGIC = 0xF993FAC8, 0xF993FAC9  # NDARRAY_V1_MAGIC, NDARRAY_V2_MAGIC, uint32
CPU = struct.pack("<ii", 1, 0)  # Context::Save: int32 dev_type (1 = kCPU), int32 dev_id


def list_header(count: int) -> bytes:
    """uint64 magic 0x112, uint64 reserved 0, then dmlc's vector<NDArray>: uint64 size."""
    return struct.pack("<QQQ", LIST_MAGIC, 0, count)


def names_block(names: list[bytes]) -> bytes:
    """dmlc's vector<string>: uint64 count, then per string uint64 length and its bytes."""
    return struct.pack("<Q", len(names)) + b"".join(struct.pack("<Q", len(n)) + n for n in names)


def legacy_float64() -> bytes:
    """LegacyLoad: the first uint32 is ndim itself, then ndim uint32 dims; context; int32 type flag; data."""
    return (
        struct.pack("<I", 2)
        + struct.pack("<II", 2, 2)
        + CPU
        + struct.pack("<i", 1)  # kFloat64
        + struct.pack("<4d", 0.5, -1.25, 3.0, 1e10)
    )


def v1_uint8() -> bytes:
    """V1: uint32 magic, TShape (int32 ndim, int64 dims), context, int32 type flag, data."""
    return (
        struct.pack("<I", V1_MAGIC)
        + struct.pack("<iq", 1, 3)
        + CPU
        + struct.pack("<i", 3)  # kUint8
        + bytes([0, 7, 255])
    )


def v2_int32() -> bytes:
    """V2: uint32 magic, int32 storage type (0 = kDefaultStorage), TShape, context, type flag, data."""
    return (
        struct.pack("<Ii", V2_MAGIC, 0)
        + struct.pack("<iqq", 2, 1, 2)
        + CPU
        + struct.pack("<i", 4)  # kInt32
        + struct.pack("<2i", -7, 2**31 - 1)
    )


def v2_int8() -> bytes:
    return (
        struct.pack("<Ii", V2_MAGIC, 0)
        + struct.pack("<iq", 1, 4)
        + CPU
        + struct.pack("<i", 5)  # kInt8
        + struct.pack("<4b", -128, -1, 0, 127)
    )


def v2_row_sparse() -> bytes:
    """V2 with storage type 1 (kRowSparseStorage): then a storage shape would follow (not read)."""
    return struct.pack("<Ii", V2_MAGIC, 1) + struct.pack("<iq", 1, 2) + struct.pack("<iq", 1, 4)


def test_hand_assembled_file_of_four_dtypes_reads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "hand.params"
    path.write_bytes(
        list_header(4)
        + legacy_float64()
        + v1_uint8()
        + v2_int32()
        + v2_int8()
        + names_block([b"arg:f64", b"arg:u8", b"aux:i32", b"aux:i8"])
    )
    read = read_mxnet_params(path)
    assert list(read) == ["arg:f64", "arg:u8", "aux:i32", "aux:i8"]
    expected = {
        "arg:f64": np.array([[0.5, -1.25], [3.0, 1e10]], np.float64),
        "arg:u8": np.array([0, 7, 255], np.uint8),
        "aux:i32": np.array([[-7, 2**31 - 1]], np.int32),
        "aux:i8": np.array([-128, -1, 0, 127], np.int8),
    }
    for name, array in expected.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape, name
        assert np.array_equal(read[name], array), name


def test_a_none_array_a_zero_length_dimension_and_32_legacy_dimensions_are_read(tmp_path: Path) -> None:
    """NDArray::Save of a none array writes its shape of ndim 0 only; a dimension of 0 is not negative; a legacy
    header is ndim itself, up to 32 (numpy 1's NPY_MAXDIMS), 33 is no header (boundary sweep)."""
    none = struct.pack("<I", V1_MAGIC) + struct.pack("<i", 0)
    empty = struct.pack("<Ii", V2_MAGIC, 0) + struct.pack("<iqq", 2, 0, 3) + CPU + struct.pack("<i", 0)  # no data
    deep = struct.pack("<I", 32) + struct.pack("<32I", *[1] * 32) + CPU + struct.pack("<i", 1) + struct.pack("<d", 2.5)
    path = tmp_path / "edges.params"
    path.write_bytes(list_header(3) + none + empty + deep + names_block([b"arg:none", b"arg:empty", b"arg:deep"]))
    read = read_mxnet_params(path)
    none, empty, deep = read["arg:none"], read["arg:empty"], read["arg:deep"]
    assert none.shape == (0,) and empty.shape == (0, 3) and empty.dtype == np.float32
    assert deep.shape == (1,) * 32 and deep.dtype == np.float64 and deep.item() == 2.5
    path.write_bytes(list_header(1) + struct.pack("<I", 33) + bytes(33 * 4) + CPU + names_block([b"arg:x"]))
    with pytest.raises(WeightsError, match="unknown array header 0x21"):
        read_mxnet_params(path)


def test_sparse_storage_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sparse.params"
    path.write_bytes(list_header(1) + v2_row_sparse() + names_block([b"arg:s"]))
    with pytest.raises(WeightsError, match="sparse array"):
        read_mxnet_params(path)


@pytest.mark.parametrize("names", [[b"arg:a"], [b"arg:a", b"arg:b", b"arg:c"]])
def test_names_and_arrays_counts_must_agree(tmp_path: Path, names: list[bytes]) -> None:
    path = tmp_path / "count.params"
    path.write_bytes(list_header(2) + v1_uint8() + v2_int8() + names_block(names))
    with pytest.raises(WeightsError, match=f"2 arrays but {len(names)} names"):
        read_mxnet_params(path)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("count", [1, 2**40])
def test_negative_dimension_is_refused_not_looped_on(tmp_path: Path, count: int) -> None:
    """A V1 dim of -7 (float32: -28 bytes, this array's own header) made the reader seek back to the same
    array again and again (with 2**40 arrays announced: forever, its list of arrays growing)."""
    array = struct.pack("<I", V1_MAGIC) + struct.pack("<iq", 1, -7) + CPU + struct.pack("<i", 0)
    data = list_header(count) + array
    path = tmp_path / "dims.params"
    path.write_bytes(data + bytes(128 - len(data)))
    with pytest.raises(WeightsError, match="negative dimension -7" if count == 1 else "array count"):
        read_mxnet_params(path)


def test_shape_whose_product_overflows_is_refused(tmp_path: Path) -> None:
    array = struct.pack("<I", V1_MAGIC) + struct.pack("<iqq", 2, 2**62, 2**62) + CPU + struct.pack("<i", 0)
    path = tmp_path / "overflow.params"
    path.write_bytes(list_header(1) + array + names_block([b"arg:x"]))
    with pytest.raises(WeightsError, match="more bytes than"):
        read_mxnet_params(path)


def test_non_utf8_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "name.params"
    path.write_bytes(list_header(1) + v1_uint8() + names_block([b"arg:\xff\xfe"]))
    with pytest.raises(WeightsError, match="UTF-8"):
        read_mxnet_params(path)


@pytest.mark.parametrize("field", ["arrays", "names", "name_length"])
def test_counts_beyond_the_file_are_refused(tmp_path: Path, field: str) -> None:
    huge = 2**63 + 5
    arrays, names = (huge if field == "arrays" else 1), ([b"arg:a"] if field != "names" else [])
    data = list_header(arrays) + v1_uint8()
    data += struct.pack("<Q", huge) if field == "names" else names_block(names)
    if field == "name_length":
        data = list_header(1) + v1_uint8() + struct.pack("<QQ", 1, huge) + b"arg:a"
    path = tmp_path / "count.params"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match="bytes left"):
        read_mxnet_params(path)


def _mutate(data: bytearray, rng: random.Random) -> bytes:
    """One to three damages: a flipped byte, a 4- or 8-byte field set to a boundary value, a cut, an insert."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        at = rng.randrange(len(data))
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind in (1, 2):
            size = 4 if kind == 1 else 8
            value = rng.choice(
                [
                    0,
                    1,
                    2 ** (8 * size - 1) - 1,
                    2 ** (8 * size - 1),
                    2 ** (8 * size) - 1,
                    rng.randrange(2 ** (8 * size)),
                ]
            )
            at = min(at, len(data) - size)
            data[at : at + size] = value.to_bytes(size, "little")
        elif kind == 3:
            del data[at:]
            if not data:
                data = bytearray(b"\x12")
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
    return bytes(data)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout", ["legacy", "v1", "v2"])
def test_random_damage_loads_or_raises_weights_error(tmp_path: Path, layout: str) -> None:
    arrays = {
        "arg:w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "aux:m": np.array([1.5, -2.0], np.float16),
        "arg:i": np.arange(4, dtype=np.int64).reshape(1, 2, 2),
    }
    valid = tmp_path / "valid.params"
    write_mxnet_params(valid, arrays, layout)
    original = bytearray(valid.read_bytes())
    rng = random.Random(f"mxnet-{layout}")
    path = tmp_path / "damaged.params"
    outcomes = {"loaded": 0, "refused": 0}
    tracemalloc.start()
    try:
        for _ in range(300):
            path.write_bytes(_mutate(original, rng))
            try:
                read_mxnet_params(path)
                outcomes["loaded"] += 1
            except WeightsError as error:
                assert "\n" not in str(error)
                outcomes["refused"] += 1
            _, peak = tracemalloc.get_traced_memory()
            assert peak < 16 * 2**20, f"reading a {path.stat().st_size}-byte file took {peak} bytes"
    finally:
        tracemalloc.stop()
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 0, outcomes


# ------------------------------------------- variation pass (issue 34 item 6): PyTorch files, load_checked
@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_a_pytorch_file_is_read_plain_or_nested_under_state_dict_or_model(tmp_path: Path, wrap: str | None) -> None:
    import torch

    from epspp.nets.weights import read_state_dict

    state = {"a.weight": torch.arange(3.0), "b.bias": torch.zeros(1)}
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, tmp_path / "w.pth")
    read = read_state_dict(tmp_path / "w.pth")
    assert list(read) == ["a.weight", "b.bias"] and torch.equal(read["a.weight"], state["a.weight"])


def test_pytorch_files_without_a_state_dict_are_one_line_errors(tmp_path: Path) -> None:
    import torch

    from epspp.nets.weights import read_state_dict

    path = tmp_path / "w.pth"
    for content in ([torch.ones(1)], {"a": 1}, {"state_dict": {"a": "b"}}):
        torch.save(content, path)
        with pytest.raises(WeightsError, match=r"w\.pth holds no state dict of tensors"):
            read_state_dict(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match=r"cannot read .*w\.pth as PyTorch weights"):
        read_state_dict(path)
    with pytest.raises(WeightsError, match=r"weight file .*nope\.pth does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_load_checked_names_each_misfit_and_lets_batchnorm_counters_be_absent() -> None:
    import torch
    from torch import nn

    from epspp.nets.weights import load_checked

    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    state = {k: torch.full_like(v, 0.5) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_checked(net, state, "x.pth")  # the BatchNorm counter absent from the file: loaded anyway
    assert torch.equal(net[0].weight, torch.full((2, 1, 1, 1), 0.5))
    load_checked(net, state | {"1.num_batches_tracked": torch.tensor(4), "5.num_batches_tracked": torch.tensor(1)}, "x")
    assert int(net[1].num_batches_tracked) == 4
    bad = {k: v for k, v in state.items() if k != "0.bias"} | {"2.weight": torch.zeros(1), "1.weight": torch.zeros(3)}
    with pytest.raises(WeightsError) as error:
        load_checked(net, bad, "x.pth")
    assert str(error.value) == (
        "x.pth does not fit the Sequential network: missing 1 keys: 0.bias; unexpected 1 keys: 2.weight; "
        "wrong shapes: 1.weight (3,) vs (2,). Check that the file is the one the config names"
    )
    many = nn.Sequential(*[nn.Conv2d(1, 1, 1) for _ in range(5)])
    with pytest.raises(
        WeightsError, match=r"missing 10 keys: 0\.bias, 0\.weight, 1\.bias, .*, 3\.weight \.\.\. \(10 in all\)"
    ):
        load_checked(many, {}, "y.pth")
