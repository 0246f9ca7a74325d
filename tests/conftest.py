"""Shared fixtures: a tiny synthetic dataset in the VOC layout, generated once per session.

``synthetic_root`` is shared by every test of the session: treat it as read-only (no command writes into a
dataset: its caches go to ``$XDG_CACHE_HOME/epspp``, which ``user_cache_in_tmp`` points into pytest's folders).
Tests that delete or corrupt files use ``synthetic_copy``, a private copy.
``localization_checkpoint`` (a tiny stage-1 checkpoint of it) is shared the same way: read-only.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
# Tiny models on a 2-core machine: one thread per process avoids oversubscription (the suite runs
# `epspp` subprocesses and notebook kernels beside the pytest process).
os.environ.setdefault("OMP_NUM_THREADS", "1")

SYNTHETIC = {"num_train": 20, "num_val": 6, "image_size": 48, "seed": 0}
#: the longest modules (multi-process launches and real stage processes: 2-4 minutes each on one core) are
#: collected first, longest first, so that under `make test`'s xdist loadscope they start at once and overlap the
#: rest instead of ending the run alone
FIRST_MODULES = (
    "tests/integration/ddp/test_ddp.py",
    "tests/integration/make/test_make_targets.py",
    "tests/integration/fit/test_resume.py",
    "tests/integration/run/test_run_photos.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0]
        return FIRST_MODULES.index(module) if module in FIRST_MODULES else len(FIRST_MODULES)

    items.sort(key=rank)  # stable: the rest keep their order


#: what libraries keep in the temporary folder for a whole process (removed at its exit, or a per-user cache):
#: wandb's media and artifact folders, multiprocessing's folder (DataLoader workers), torch's compile cache and
#: its elastic launcher's folder (DDP launches),
#: onnxruntime's session file
LIBRARY_TEMP = re.compile(r"tmp\w{8}wandb-(media|artifacts)|pymp-\w{8}|torchinductor_\w+|torchelastic_\w+|\.ses")


@pytest.fixture(scope="session", autouse=True)
def temp_folder_left_clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's temporary files go to a private folder (``$TMPDIR`` of this process and of the commands it
    starts, ``tempfile.tempdir``) that must be empty at the end: a test or a command that leaves a temporary entry
    behind (such as ``in_process``'s ``epspp-cli-*`` working directory) fails the session, naming the entries.
    pytest's own ``tmp_path`` folders stay where pytest keeps them."""
    tmp_path_factory.getbasetemp()  # pytest's folders in the system temp folder, before $TMPDIR is redirected
    private = Path(tempfile.mkdtemp(prefix="epspp-tests-"))
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(private), str(private)
    yield private
    if "wandb" in sys.modules:  # an in-process W&B run's service keeps its folder until it ends
        sys.modules["wandb"].teardown()
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    left = sorted(entry.name for entry in private.iterdir() if not LIBRARY_TEMP.fullmatch(entry.name))
    shutil.rmtree(private, ignore_errors=True)
    if left:
        pytest.fail(
            f"the tests left {len(left)} entries in the temporary folder: {', '.join(left[:20])}; remove "
            "them where they are made (tempfile.TemporaryDirectory, or tmp_path)",
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def user_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's cache folder of this process and of the commands it starts (``$XDG_CACHE_HOME``, where epspp keeps
    its dataset caches, ``epspp.data.cache``) inside pytest's folders: the suite writes nothing in the home folder."""
    saved = os.environ.get("XDG_CACHE_HOME")
    folder = tmp_path_factory.mktemp("xdg_cache")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def run_folders_released() -> Iterator[None]:
    """The run folders a test's direct calls (``claim_folder``, ``run_demo``) hold in this process are released after
    it (``epspp.runs.lock``; a command's own end releases them in a real process)."""
    from epspp.runs.lock import release_folders

    yield
    release_folders()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset (20 train, 6 val, 48x48 px, 5 classes, labeled_10pct = 2 ids); do not modify it."""
    from epspp.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "data", **SYNTHETIC)


@pytest.fixture(scope="session")
def localization_checkpoint(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a 2-step EPS++ fit (tiny ResNet, ``fixtures.cli.TINY_FIT``) of ``synthetic_root``, trained once
    per session by ``epspp fit`` in a subprocess, as a user runs it; do not modify it (copy it first)."""
    from fixtures.cli import SCRATCH_EPSPP, TINY_FIT, run_epspp

    run = tmp_path_factory.mktemp("localization")
    run_epspp(
        [
            "fit",
            "--config",
            SCRATCH_EPSPP,
            "--data.root",
            synthetic_root,
            "--trainer.default_root_dir",
            run,
            "--trainer.logger",
            "false",
            "--trainer.num_sanity_val_steps",
            "0",
            *TINY_FIT,
        ],
        cwd=run,
    )
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file(), sorted(map(str, run.rglob("*")))
    return checkpoint


@pytest.fixture
def voc_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny VOC2012 + SBD download (``fixtures.trees``): (VOC2012 folder, SBD dataset folder)."""
    from fixtures.trees import write_voc_sbd_tree

    return write_voc_sbd_tree(tmp_path)


@pytest.fixture
def coco_tree(tmp_path: Path) -> Path:
    """A tiny COCO download in EPS's layout (``fixtures.trees``)."""
    from fixtures.trees import write_coco_tree

    return write_coco_tree(tmp_path / "coco")


@pytest.fixture
def synthetic_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of ``synthetic_root`` (without its label cache) that a test may modify."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data", ignore=shutil.ignore_patterns(".cache")))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run much faster on one thread (and do not stall on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
