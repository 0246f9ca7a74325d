"""Where the synthetic generator put its context and saliency errors: the bits against its own record, the easy
difficulty byte-identical to the generator before the record existed, the hard difficulty's statistics, the
readers' errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import epspp.data.synthetic as synthetic
from epspp.data.classes import SYNTHETIC_CLASSES
from epspp.data.io import DatasetError, read_mask_pixels, read_saliency
from epspp.data.synthetic import (
    BOAT,
    DISC,
    HARD_CONTEXT_CLASSES,
    HARD_MISSING_CLASS,
    HARD_PART_CLASS,
    TRAIN,
    SyntheticConfig,
    generate_synthetic,
    render_sample,
    write_saliency_variant,
)
from epspp.data.truth import (
    FALSE_COVERAGE,
    HALO,
    INJECTED,
    MISSING_CLASS,
    MISSING_PART,
    read_context,
    read_saliency_errors,
)

EASY = {"image_size": 32, "num_train": 8, "num_val": 3, "seed": 5}
EASY_RATES = {"missing_class_rate": 0.5, "missing_part_rate": 0.5, "false_coverage_rate": 0.5}
# sha256 of EASY's images, masks and saliency maps as main (af54056, before the error record) wrote them
EASY_SHA256 = "48a3b968ce1036f488f165f3675456e7ea0146442594d85177918c6c55e98d22"


@pytest.fixture(scope="module")
def easy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("truth") / "easy", **EASY, **EASY_RATES)


def _ids(root: Path) -> list[str]:
    sizes = (("train", EASY["num_train"]), ("val", EASY["num_val"]))
    return [f"{split}_{i:06d}" for split, n in sizes for i in range(n)]


def test_easy_images_masks_and_saliency_are_those_of_the_generator_before_the_record(easy: Path) -> None:
    digest = hashlib.sha256()
    for sub in ("JPEGImages", "SegmentationClassAug", "saliency"):
        for path in sorted(p for p in (easy / sub).iterdir() if p.is_file()):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    assert digest.hexdigest() == EASY_SHA256


def test_error_bits_are_exactly_the_recorded_errors(easy: Path) -> None:
    meta = json.loads((easy / "synthetic.json").read_text())
    record = meta["errors"]
    assert "systematic" not in meta["splits"]["train"]  # the hard difficulty's counts only
    assert {k for e in record.values() for k in e} == {"missing_class", "missing_part", "false_coverage"}
    for image_id in _ids(easy):
        mask = read_mask_pixels(easy / "SegmentationClassAug" / f"{image_id}.png")
        bits, owner = read_saliency_errors(easy / "saliency", image_id), read_context(easy, image_id)
        errors = record.get(image_id, {})
        missing = mask == SYNTHETIC_CLASSES.index(errors.get("missing_class", "background"))
        assert np.array_equal(bits & MISSING_CLASS > 0, missing & ("missing_class" in errors)), image_id
        part = bits & MISSING_PART > 0
        if "missing_part" in errors:
            cls = mask == SYNTHETIC_CLASSES.index(errors["missing_part"]["class"])
            assert part.any() and not (part & ~cls).any() and part.sum() <= cls.sum()
            assert (read_saliency(easy / "saliency" / f"{image_id}.png")[part] < 0.5).mean() > 0.5
        else:
            assert not part.any()
        cover = bits & FALSE_COVERAGE > 0
        assert cover.any() == ("false_coverage" in errors) and not (cover & (mask > 0)).any()
        if errors.get("false_coverage") in ("rails", "water"):
            assert (owner[cover] == (TRAIN if errors["false_coverage"] == "rails" else BOAT)).all()
        assert not (bits & HALO).any() and bits.max() <= INJECTED  # no halo in the easy difficulty
        # context: background only, with its class only, owner ids rails -> train, water -> boat
        assert not (owner[mask > 0]).any() and set(np.unique(owner)) <= {0, TRAIN, BOAT}
        for cls in (TRAIN, BOAT):
            assert (owner == cls).any() == (mask == cls).any()


def test_a_saliency_variant_records_its_own_errors(easy: Path, tmp_path: Path) -> None:
    same = write_saliency_variant(easy, tmp_path / "same", **EASY_RATES)
    none = write_saliency_variant(easy, tmp_path / "none")
    assert same["splits"]["train"]["missing_class"] > 0
    for image_id in _ids(easy):
        own = read_saliency_errors(easy / "saliency", image_id)
        assert np.array_equal(read_saliency_errors(tmp_path / "same", image_id), own)
        assert not read_saliency_errors(tmp_path / "none", image_id).any()
    assert none["splits"]["val"]["images"] == EASY["num_val"]


def _hard_samples(seed: int, count: int = 60) -> list:
    cfg = SyntheticConfig(image_size=32, difficulty="hard", seed=seed)
    return [render_sample(cfg, np.random.default_rng([seed, 0, i])) for i in range(count)]


def test_hard_statistics_and_reproducibility() -> None:
    samples = _hard_samples(4)
    shown, alone = {}, {}
    for c in HARD_CONTEXT_CLASSES:
        shown[c] = [(s.context_owner == c).any() for s in samples if (s.mask == c).any()]
        alone[c] = [(s.context_owner == c).any() for s in samples if not (s.mask == c).any()]
    pooled = np.mean([x for v in shown.values() for x in v])
    assert 0.6 <= pooled <= 0.95 and all(0 < np.mean(v) < 1 for v in shown.values())  # partial co-occurrence
    assert all(any(v) for v in alone.values())  # each context also without its object
    for s in samples:
        assert not (s.context_owner[s.mask > 0]).any()  # context is background in the ground truth
    # systematic errors: every triangle misses a part; the rails are salient in most train images that show them
    triangles = [s for s in samples if (s.mask == HARD_PART_CLASS).any()]
    assert len(triangles) >= 10
    assert all((s.error_bits[s.mask == HARD_PART_CLASS] & MISSING_PART).any() for s in triangles)
    rails = [s for s in samples if (s.mask == TRAIN).any() and (s.context_owner == TRAIN).any()]
    rails_salient = [(s.error_bits[s.context_owner == TRAIN] & FALSE_COVERAGE).any() for s in rails]
    assert len(rails) >= 5 and np.mean(rails_salient) >= 0.6
    squares = [s for s in samples if (s.mask == HARD_MISSING_CLASS).any()]
    square_gone = [(s.error_bits[s.mask == HARD_MISSING_CLASS] & MISSING_CLASS).all() for s in squares]
    assert 0.15 <= np.mean(square_gone) <= 0.7  # 0.4, against the default missing_class_rate 0.1 over all classes
    # graded maps: saliency varies within the objects; halos: background above 0.5 only by the halo, marked
    clean = [s for s in samples if not (s.error_bits & INJECTED).any()]
    assert np.mean([np.ptp(s.saliency[s.mask > 0]) for s in clean]) > 60
    halo = np.concatenate([(s.error_bits & HALO > 0).ravel() for s in samples])
    assert halo.any() and all(not (s.error_bits[s.mask > 0] & HALO).any() for s in samples)
    assert all((s.saliency[s.error_bits & HALO > 0] > 127).all() for s in samples)
    again = _hard_samples(4, 5)
    for a, b in zip(again, samples[:5], strict=True):
        assert np.array_equal(a.saliency, b.saliency) and np.array_equal(a.image, b.image)
        assert np.array_equal(a.error_bits, b.error_bits) and np.array_equal(a.context_owner, b.context_owner)


def test_the_halo_bit_marks_the_background_above_half_only_because_of_the_halo(monkeypatch: pytest.MonkeyPatch) -> None:
    haloed = _hard_samples(6, 20)
    monkeypatch.setattr(synthetic, "HARD_HALO_PEAK", (0.0, 0.0))  # the same draws, a halo of 0
    plain = _hard_samples(6, 20)
    for a, b in zip(haloed, plain, strict=True):
        expected = (a.saliency > 127) & (b.saliency <= 127) & (a.mask == 0)
        assert np.array_equal(a.error_bits & HALO > 0, expected)
        assert np.array_equal(a.error_bits & INJECTED, b.error_bits) and not (b.error_bits & HALO).any()
        assert np.array_equal(a.saliency[a.mask > 0], b.saliency[a.mask > 0])  # no halo on the objects
    assert sum((a.error_bits & HALO).any() for a in haloed) >= 10


def test_hard_is_recorded_and_its_variants_keep_its_systematic_errors(tmp_path: Path) -> None:
    zero = {"missing_class_rate": 0.0, "missing_part_rate": 0.0, "false_coverage_rate": 0.0}
    root = generate_synthetic(tmp_path / "hard", num_train=6, num_val=2, image_size=32, difficulty="hard", **zero)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["params"]["difficulty"] == "hard" and meta["errors"]  # systematic errors at zero rates
    systematic = [e["systematic"] for i, e in meta["errors"].items() if i.startswith("train_")]
    counts = {k: sum(k in e for e in systematic) for k in ("missing_class", "missing_part", "false_coverage")}
    assert meta["splits"]["train"]["systematic"] == counts and sum(counts.values()) > 0
    owners = {int(v) for i in range(6) for v in np.unique(read_context(root, f"train_{i:06d}"))}
    assert owners <= {0, *HARD_CONTEXT_CLASSES} and DISC in HARD_CONTEXT_CLASSES
    write_saliency_variant(root, tmp_path / "same")
    write_saliency_variant(root, tmp_path / "lost", missing_class_rate=1.0)
    for image_id in [f"train_{i:06d}" for i in range(6)]:
        own = read_saliency_errors(root / "saliency", image_id)
        assert np.array_equal(read_saliency_errors(tmp_path / "same", image_id), own)
        lost = read_saliency_errors(tmp_path / "lost", image_id)
        assert not (own & (MISSING_PART | FALSE_COVERAGE) & ~lost).any() and (lost & MISSING_CLASS).any()
    with pytest.raises(ValueError, match="difficulty"):
        SyntheticConfig(difficulty="medium")  # type: ignore[arg-type]


def test_readers_name_a_missing_or_damaged_file(tmp_path: Path) -> None:
    (tmp_path / "SegmentationContext").mkdir()
    (tmp_path / "errors").mkdir()
    with pytest.raises(DatasetError, match=r"context map .*SegmentationContext/a\.png not found"):
        read_context(tmp_path, "a")
    (tmp_path / "errors" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"cannot read saliency error map .*errors/a\.png"):
        read_saliency_errors(tmp_path, "a")
