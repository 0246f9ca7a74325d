"""The synthetic generator's class count (``--num-classes``, up to VOC's 20)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import gt_mask, split_ids

from epspp.cli.prepare import prepare_main
from epspp.data.classes import SYNTHETIC_CLASSES
from epspp.data.synthetic import SyntheticConfig, generate_synthetic, render_sample

# sha256 over image, mask, saliency and context of train 0..23 and val 0..5 at the default parameters,
# computed with the generator as it was before --num-classes existed (commit 096746d)
DEFAULT_DIGEST = "644a3f845c32bccc9278ea4ec346b900829113bf99c13a126d5ffd00fb94641b"


def test_default_dataset_is_the_one_before_num_classes() -> None:
    cfg = SyntheticConfig()
    digest = hashlib.sha256()
    for split, count in ((0, 24), (1, 6)):
        for i in range(count):
            sample = render_sample(cfg, np.random.default_rng([cfg.seed, split, i]))
            for array in (sample.image, sample.mask, sample.saliency, sample.context):
                digest.update(array.tobytes())
    assert digest.hexdigest() == DEFAULT_DIGEST


@pytest.fixture(scope="module")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("twenty") / "data"
    assert (
        prepare_main(
            [
                "synthetic",
                "--root",
                str(root),
                "--num-classes",
                "20",
                "--num-train",
                "150",
                "--num-val",
                "4",
                "--image-size",
                "40",
            ]
        )
        == 0
    )
    return root


def test_twenty_classes_all_present_in_train_with_valid_masks(twenty: Path) -> None:
    names = json.loads((twenty / "classes.json").read_text())["names"]
    assert len(names) == 21 and names[:6] == list(SYNTHETIC_CLASSES) and len(set(names)) == 21
    seen: dict[int, int] = {}
    for image_id in split_ids(twenty, "train"):
        mask = gt_mask(twenty, image_id)
        assert mask.shape == (40, 40) and mask.dtype == np.uint8
        values = set(np.unique(mask).tolist())
        assert values <= set(range(21)) and values - {0}  # every image shows an object, no value beyond 20
        for value in values - {0}:
            seen[value] = seen.get(value, 0) + 1
    assert sorted(seen) == list(range(1, 21))
    meta = json.loads((twenty / "synthetic.json").read_text())
    assert meta["params"]["num_classes"] == 20 and meta["classes"] == names
    assert meta["splits"]["train"]["class_images"] == {names[c]: seen[c] for c in range(1, 21)}


def test_context_classes_keep_their_context_among_twenty() -> None:
    cfg = SyntheticConfig(num_classes=20)
    for i in range(120):
        sample = render_sample(cfg, np.random.default_rng([1, 0, i]))
        for cls in (4, 5):  # a train stands on rails, a boat floats on water, whatever the other classes
            if (sample.mask == cls).any():
                assert sample.context.any()


@pytest.mark.parametrize("bad", [0, 21])
def test_num_classes_out_of_range_is_refused(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="num_classes must be within 1..20"):
        generate_synthetic(tmp_path / "x", num_train=2, num_val=1, num_classes=bad)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- --overwrite keeps what the user added


def test_fewer_classes_than_five_draw_only_those_and_hard_paints_only_their_contexts() -> None:
    """One class: every object a disc. Hard with 3 classes (disc, square, triangle): the mat (the disc's) is the
    only context; the rails and water of the absent train and boat are never painted, not even alone."""
    one = SyntheticConfig(image_size=32, num_classes=1)
    values = {int(v) for i in range(10) for v in np.unique(render_sample(one, np.random.default_rng([1, i])).mask)}
    assert values == {0, 1}
    hard = SyntheticConfig(image_size=32, num_classes=3, difficulty="hard")
    owners: set[int] = set()
    for i in range(40):
        sample = render_sample(hard, np.random.default_rng([2, 0, i]))
        assert int(sample.mask.max()) <= 3
        owners |= {int(v) for v in np.unique(sample.context_owner)}
    assert owners == {0, 1}
