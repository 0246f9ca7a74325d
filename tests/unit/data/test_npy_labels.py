"""EPS's ``cls_labels.npy``: the pickled dict is read without running code; anything else is one DatasetError."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from epspp.data.npy_labels import load_npy_labels
from epspp.errors import DatasetError


def test_eps_dict_of_multi_hot_arrays_is_read(tmp_path: Path) -> None:
    table = {"2007_000032": np.array([1, 0, 0], np.float32), "2007_000039": np.array([0, 1, 1], np.float32)}
    np.save(tmp_path / "cls_labels.npy", table)  # what EPS's make_cls_labels.py writes: a 0-d object array
    loaded = load_npy_labels(tmp_path / "cls_labels.npy")
    assert sorted(loaded) == sorted(table)
    assert loaded["2007_000039"].tolist() == [0.0, 1.0, 1.0] and loaded["2007_000039"].dtype == np.float32


class _Shell:
    def __reduce__(self):  # unpickling would run os.system
        return (os.system, ("echo pwned",))


def test_a_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "cls_labels.npy", np.array({"a": _Shell()}, dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"cannot read .*cls_labels\.npy: .*refusing to load posix\.system"):
        load_npy_labels(tmp_path / "cls_labels.npy")


@pytest.mark.parametrize(
    "content",
    [np.zeros((2, 3)), {"a": "cat"}, {1: np.ones(2)}, ["a", np.ones(2)]],
    ids=["plain-array", "string-label", "int-id", "list"],
)
def test_anything_but_a_dict_of_id_to_numbers_is_refused_naming_the_json_file(tmp_path: Path, content) -> None:
    np.save(
        tmp_path / "cls_labels.npy",
        np.array(content, dtype=object) if not isinstance(content, np.ndarray) else content,
        allow_pickle=True,
    )
    with pytest.raises(
        DatasetError,
        match=r"cls_labels\.npy is not a dict of id -> numeric multi-hot array .*"
        r"write cls_labels\.json instead",
    ):
        load_npy_labels(tmp_path / "cls_labels.npy")


def test_a_truncated_or_foreign_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "cls_labels.npy").write_bytes(pickle.dumps({"a": [1, 0]}))  # a pickle, not an .npy file
    with pytest.raises(DatasetError, match=r"cannot read .*cls_labels\.npy: expected EPS's pickled dict"):
        load_npy_labels(tmp_path / "cls_labels.npy")


def test_a_file_of_npy_format_2_is_read(tmp_path: Path) -> None:
    """.npy 2.0 (a 4-byte header length, what numpy writes for headers over 64 KiB) is read as 1.0 is."""
    path = tmp_path / "cls_labels.npy"
    with open(path, "wb") as handle:
        table = np.empty((), dtype=object)
        table[()] = {"a": np.array([0, 1], np.float32)}
        np.lib.format.write_array(handle, table, version=(2, 0), allow_pickle=True)
    assert path.read_bytes()[6:8] == b"\x02\x00"
    assert {k: v.tolist() for k, v in load_npy_labels(path).items()} == {"a": [0.0, 1.0]}
