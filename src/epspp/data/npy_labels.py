"""EPS's ``cls_labels.npy`` (a pickled numpy dict id -> multi-hot), read without running code.

The unpickler admits only numpy arrays, so a crafted file cannot run code.  A leaf module: ``classes``
(class names of a root without ``classes.json``) and ``labels`` (image-level labels) both read it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from epspp.errors import DatasetError

NPY_LABELS = "cls_labels.npy"

# what a pickled dict of numeric arrays needs (numpy 1.x and 2.x names); nothing else is imported
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def load_npy_labels(path: Path) -> dict[str, np.ndarray]:
    """Read an EPS ``cls_labels.npy`` (a 0-d object array holding a dict id -> multi-hot) without running code."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
            if dtype.hasobject:
                table = _ArrayUnpickler(handle, encoding="latin1").load()
            else:
                table = None
    except Exception as error:  # a truncated or foreign file: numpy and pickle raise many types
        raise DatasetError(f"cannot read {path}: expected EPS's pickled dict id -> multi-hot ({error})") from error
    if isinstance(table, np.ndarray) and table.dtype.hasobject and table.shape == ():
        table = table.item()
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for k, v in table.items()
    ):
        raise DatasetError(
            f"{path} is not a dict of id -> numeric multi-hot array (shape {shape}): write "
            "cls_labels.json instead ({id: [class names]})"
        )
    return table
