"""Joint transforms: image, saliency and mask stay aligned; padding values; evaluation pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from epspp.data.transforms import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

MEAN = np.asarray(IMAGENET_MEAN, np.float32)
STD = np.asarray(IMAGENET_STD, np.float32)
REPEATS = 25  # the random ops (scale, flip, crop position, jitter) are drawn anew each call


def _normalized(image: np.ndarray) -> np.ndarray:
    """(3, H, W) reference normalization of an (H, W, 3) uint8 image."""
    return ((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def _denormalized(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) 0..255 float from a normalized (3, H, W) tensor."""
    return (image.numpy().transpose(1, 2, 0) * STD + MEAN) * 255.0


def _square_scene(height: int = 60, width: int = 44) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright square (class 3) off-centre on a dark background, with its saliency and mask."""
    inside = np.zeros((height, width), bool)
    inside[8:30, 4:22] = True  # upper-left: a flip moves it visibly
    image = np.full((height, width, 3), 30, np.uint8)
    image[inside] = (230, 220, 210)
    saliency = inside.astype(np.float32)
    mask = np.where(inside, 3, 0).astype(np.uint8)
    mask[-3:, :] = IGNORE_INDEX  # an ignore band at the bottom
    return image, mask, saliency


def test_train_transform_keeps_image_saliency_and_mask_aligned():
    image, mask, saliency = _square_scene()
    transform = train_transform(crop_size=40, resize_long=(48, 96), color_jitter=0.3)
    checked = 0
    for _ in range(REPEATS):
        out = transform(image, mask, saliency)
        assert out["image"].shape == (3, 40, 40) and out["image"].dtype == torch.float32
        assert out["saliency"].shape == (1, 40, 40) and out["saliency"].dtype == torch.float32
        assert out["mask"].shape == (40, 40) and out["mask"].dtype == torch.int64
        m, s = out["mask"].numpy(), out["saliency"][0].numpy()
        brightness = _denormalized(out["image"]).mean(axis=2)
        assert set(np.unique(m).tolist()) <= {0, 3, IGNORE_INDEX}
        assert 0.0 <= s.min() and s.max() <= 1.0
        square = m == 3
        # away from the square's border (where bilinear and nearest interpolation differ), the three
        # targets agree pixel by pixel: inside the mask's square saliency is 1 and the image bright
        core = ndimage.binary_erosion(square, iterations=3)
        outside = ndimage.binary_erosion(m == 0, iterations=3)
        if not (core.sum() >= 16 and outside.sum() >= 16):
            continue  # the crop missed the square (or the background)
        checked += 1
        assert s[core].min() > 0.99 and s[outside].max() < 0.01
        assert brightness[core].min() > brightness[outside].max() + 40
        # the three squares have the same centre (a flip or crop of one target alone moves it)
        centre = np.argwhere(square).mean(axis=0)
        np.testing.assert_allclose(np.argwhere(s > 0.5).mean(axis=0), centre, atol=1.0)
        # (padding is the mean colour, between the two: it is not part of either)
        bright = (brightness > (brightness[core].min() + brightness[outside].max()) / 2) & (m != IGNORE_INDEX)
        np.testing.assert_allclose(np.argwhere(bright).mean(axis=0), centre, atol=1.0)
    assert checked >= REPEATS // 3


def test_train_transform_pads_mask_with_ignore_and_saliency_with_zero():
    rng = np.random.default_rng(0)
    image = rng.integers(20, 256, (20, 16, 3), dtype=np.uint8)  # no pixel is 0: padding is recognizable
    mask = rng.integers(0, 4, (20, 16), dtype=np.uint8)  # no 255 in the source mask
    saliency = rng.uniform(0.1, 1.0, (20, 16)).astype(np.float32)  # no 0 in the source saliency
    transform = train_transform(crop_size=32, resize_long=(20, 20), color_jitter=0.0)
    for _ in range(REPEATS):
        out = transform(image, mask, saliency)
        m, s = out["mask"].numpy(), out["saliency"][0].numpy()
        pad = m == IGNORE_INDEX
        assert pad.sum() == 32 * 32 - 20 * 16
        # the original content is one 20x16 block
        rows, columns = np.nonzero(~pad)
        assert rows.max() - rows.min() + 1 == 20 and columns.max() - columns.min() + 1 == 16
        assert np.all(s[pad] == 0.0) and np.all(s[~pad] > 0.09)
        pixels = _denormalized(out["image"])
        # image padded after normalization with 0, the mean colour (EPS's random_crop_with_saliency)
        assert torch.all(out["image"][:, torch.from_numpy(pad)] == 0.0)
        block = (slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1))
        content_mask, content_sal = m[block], s[block]
        content_image = np.rint(pixels[block]).astype(np.uint8)
        if not np.array_equal(content_mask, mask):  # horizontally flipped
            content_mask, content_sal, content_image = (
                content_mask[:, ::-1],
                content_sal[:, ::-1],
                content_image[:, ::-1],
            )
        np.testing.assert_array_equal(content_mask, mask)
        np.testing.assert_allclose(content_sal, saliency, atol=1e-6)
        np.testing.assert_array_equal(content_image, image)


@pytest.mark.parametrize("crop", [12, 32])
def test_saliency_errors_follow_the_saliencys_flip_and_crop_and_are_zero_in_the_padding(crop: int) -> None:
    """The flags (an asymmetric pattern of every value 0..15) move with the saliency (here flags / 15, the same
    pattern): cropped (12 < 20x16) or padded (32), flipped or not; 0 in the padding, where the saliency is 0."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)
    flags = rng.integers(0, 16, (20, 16), dtype=np.uint8)
    flags[0, 0], flags[-1, 0] = 15, 0  # not symmetric under a flip
    saliency = flags.astype(np.float32) / 15
    transform = train_transform(crop_size=crop, resize_long=(20, 20), color_jitter=0.0)  # no resize: exact values
    torch.manual_seed(0)  # the draws (flips among them) follow PyTorch's generator
    for _ in range(REPEATS):
        out = transform(image, None, saliency, flags)
        errors, sal = out["saliency_error"].numpy(), out["saliency"][0].numpy()
        assert out["saliency_error"].dtype == torch.uint8 and errors.shape == (crop, crop)
        np.testing.assert_array_equal(errors, np.rint(sal * 15).astype(np.uint8))  # same place, padding 0 and 0
        if crop > 20:
            assert (errors == 0).sum() >= crop * crop - 20 * 16  # the padding (and the pattern's own zeros)
    # without flags the sample has no such key, and the draws are the same: image and saliency are unchanged
    torch.manual_seed(3)
    with_flags = transform(image, None, saliency, flags)
    torch.manual_seed(3)
    without = transform(image, None, saliency)
    assert "saliency_error" not in without
    assert torch.equal(with_flags["image"], without["image"]) and torch.equal(
        with_flags["saliency"], without["saliency"]
    )


def test_color_jitter_changes_image_only():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    mask = rng.integers(0, 6, (24, 24), dtype=np.uint8)
    mask[0, :] = IGNORE_INDEX
    saliency = np.round(rng.uniform(0, 1, (24, 24)), 3).astype(np.float32)
    # no scaling, no crop, no padding: only the flip and the jitter are random
    transform = train_transform(crop_size=24, resize_long=(24, 24), color_jitter=0.9)
    reference = _normalized(image)
    jittered = 0
    for _ in range(REPEATS):
        out = transform(image, mask, saliency)
        m, s, x = out["mask"].numpy(), out["saliency"][0].numpy(), out["image"].numpy()
        if not np.array_equal(m, mask):
            m, s, x = m[:, ::-1], s[:, ::-1], x[:, :, ::-1]
        np.testing.assert_array_equal(m, mask)
        np.testing.assert_allclose(s, saliency, atol=1e-6)
        jittered += not np.allclose(x, reference, atol=1e-3)
    assert jittered >= REPEATS // 3  # applied with p=0.8


def test_color_jitter_zero_leaves_image_unchanged():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    mask = np.zeros((24, 24), np.uint8)
    mask[:, :5] = 1  # asymmetric: tells whether the sample was flipped
    transform = train_transform(crop_size=24, resize_long=(24, 24), color_jitter=0.0)
    for _ in range(5):
        out = transform(image, mask)
        x = out["image"].numpy()
        if not np.array_equal(out["mask"].numpy(), mask):
            x = x[:, :, ::-1]
        np.testing.assert_allclose(x, _normalized(image), atol=1e-5)
        assert "saliency" not in out


def test_train_transform_rejects_bad_resize_range():
    with pytest.raises(ValueError, match="resize_long"):
        train_transform(32, resize_long=(64, 32))


# ------------------------------------------------------------------ evaluation
def test_eval_transform_full_resolution_is_normalization_only():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = rng.integers(0, 21, (37, 53), dtype=np.uint8)
    mask[::7] = IGNORE_INDEX
    saliency = rng.uniform(0, 1, (37, 53)).astype(np.float32)
    out = eval_transform(None)(image, mask, saliency)
    assert out["image"].shape == (3, 37, 53) and out["image"].dtype == torch.float32
    np.testing.assert_allclose(out["image"].numpy(), _normalized(image), atol=1e-5)
    assert out["mask"].dtype == torch.int64
    np.testing.assert_array_equal(out["mask"].numpy(), mask)
    np.testing.assert_allclose(out["saliency"][0].numpy(), saliency, atol=1e-7)
    # exact values at two pixels, written out
    for y, x in ((0, 0), (36, 52)):
        for c in range(3):
            expected = (image[y, x, c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
            assert float(out["image"][c, y, x]) == pytest.approx(expected, abs=1e-5)
    assert "saliency" not in eval_transform(None)(image, mask)


def test_eval_transform_custom_mean_std():
    image = np.full((4, 4, 3), (255, 0, 51), np.uint8)
    out = eval_transform(None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.1))(image, np.zeros((4, 4), np.uint8))
    np.testing.assert_allclose(out["image"][:, 0, 0].numpy(), [1.0, -2.0, -3.0], atol=1e-5)


def test_eval_transform_pads_bottom_right():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rng.integers(0, 6, (20, 30), dtype=np.uint8)
    saliency = rng.uniform(0.1, 1, (20, 30)).astype(np.float32)
    out = eval_transform(32)(image, mask, saliency)
    assert out["image"].shape == (3, 32, 32) and out["mask"].shape == (32, 32) and out["saliency"].shape == (1, 32, 32)
    m, s, x = out["mask"].numpy(), out["saliency"][0].numpy(), out["image"].numpy()
    # the content is untouched in the top-left corner
    np.testing.assert_array_equal(m[:20, :30], mask)
    np.testing.assert_allclose(s[:20, :30], saliency, atol=1e-7)
    np.testing.assert_allclose(x[:, :20, :30], _normalized(image), atol=1e-5)
    # padding: mask 255, saliency 0, image 0 after normalization (the mean colour)
    assert np.all(m[20:, :] == IGNORE_INDEX) and np.all(m[:, 30:] == IGNORE_INDEX)
    assert np.all(s[20:, :] == 0) and np.all(s[:, 30:] == 0)
    assert np.all(x[:, 20:, :] == 0) and np.all(x[:, :, 30:] == 0)


def test_eval_transform_keeps_exact_size():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = rng.integers(0, 6, (32, 32), dtype=np.uint8)
    out = eval_transform(32)(image, mask)
    np.testing.assert_array_equal(out["mask"].numpy(), mask)
    np.testing.assert_allclose(out["image"].numpy(), _normalized(image), atol=1e-5)


def test_eval_transform_shrinks_only_larger_images():
    # 80 high, 40 wide, eval_size 32: shrunk to 32x16, then padded to 32x32
    mask = np.zeros((80, 40), np.uint8)
    mask[:, 20:] = 2  # right half class 2
    mask[40:, :20] = 1  # bottom-left class 1
    image = np.zeros((80, 40, 3), np.uint8)
    image[mask == 2] = 200
    image[mask == 1] = 100
    saliency = (mask > 0).astype(np.float32)
    out = eval_transform(32)(image, mask, saliency)
    m, s = out["mask"].numpy(), out["saliency"][0].numpy()
    assert m.shape == (32, 32)
    assert np.all(m[:, 16:] == IGNORE_INDEX) and np.all(s[:, 16:] == 0)
    content = m[:, :16]
    assert IGNORE_INDEX not in content
    # nearest-neighbour shrink keeps the layout of the classes
    assert np.all(content[:, 9:] == 2) and np.all(content[17:, :7] == 1) and np.all(content[:15, :7] == 0)
    np.testing.assert_allclose(s[:, :16][content == 2], 1.0, atol=1e-6)
    brightness = _denormalized(out["image"]).mean(axis=2)[:, :16]
    assert np.abs(brightness[:, 9:] - 200).max() < 1 and np.abs(brightness[17:, :7] - 100).max() < 1


def test_deeplab_scales_resize_the_whole_image_and_pad_with_the_mean():
    """deeplab-pytorch (libs/datasets/base.py): scale by a random choice of factors, flip, pad bottom/right
    with the mean colour (0 once normalized) and the mask with 255, crop."""
    image, mask, _ = _square_scene(40, 60)
    transform = train_transform(crop_size=50, scales=(0.5, 1.5), color_jitter=0.0)
    seen = set()
    for _ in range(REPEATS):
        out = transform(image, mask)
        img, msk = out["image"], out["mask"]
        assert img.shape == (3, 50, 50) and msk.shape == (50, 50)
        width = np.nonzero(msk.numpy() != IGNORE_INDEX)[1].max() + 1
        if msk.numpy()[0, 0] != IGNORE_INDEX and (msk.numpy()[:, -1] == IGNORE_INDEX).all():
            seen.add(0.5)  # 0.5: 20x30, at the top-left of the padded crop
            assert width == 30
            assert (msk.numpy()[20:] == IGNORE_INDEX).all() and (msk.numpy()[:, 30:] == IGNORE_INDEX).all()
            np.testing.assert_allclose(img.numpy()[:, 20:], 0.0, atol=0.01)  # the mean, normalized
            np.testing.assert_allclose(img.numpy()[:, :, 30:], 0.0, atol=0.01)
        else:
            seen.add(1.5)  # 1.5: 60x90 > 50: a crop of the image, no padding
            assert (img.numpy() != 0).any(axis=0).all()
    assert seen == {0.5, 1.5}


def test_the_least_long_side_is_1_and_a_scale_factor_must_be_positive() -> None:
    """resize_long (low, high) with 1 <= low <= high, every side drawn (EPS: random.randint(low, high), both ends
    included); deeplab's scales are positive factors, so 0 is refused (boundary sweep)."""
    from epspp.data.transforms import _scale_choices

    assert _scale_choices((1, 3)) == [1, 2, 3]
    assert _scale_choices((5, 5)) == [5]
    with pytest.raises(ValueError, match=r"1 <= low <= high, got \(0, 3\)"):
        _scale_choices((0, 3))
    with pytest.raises(ValueError, match=r"scales must be positive factors, got \[0\.0, 1\.0\]"):
        train_transform(crop_size=8, scales=(0.0, 1.0))
    train_transform(crop_size=8, scales=(0.01, 1.0))


def test_pad_collate_batches_full_resolution_images_of_different_sizes():
    from epspp.data.transforms import pad_collate

    rng = np.random.default_rng(6)
    samples = []
    for height, width in ((50, 70), (90, 64)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.integers(0, 4, (height, width), dtype=np.uint8)
        sample = eval_transform(None)(image, mask, rng.uniform(0.1, 1, (height, width)).astype(np.float32))
        sample["id"] = f"{height}x{width}"
        samples.append(sample)
    batch = pad_collate(samples)
    assert batch["image"].shape == (2, 3, 90, 70) and batch["mask"].shape == (2, 90, 70)
    assert batch["saliency"].shape == (2, 1, 90, 70) and batch["id"] == ["50x70", "90x64"]
    for i, sample in enumerate(samples):
        height, width = sample["mask"].shape
        assert torch.equal(batch["image"][i, :, :height, :width], sample["image"])  # content untouched
        assert torch.equal(batch["mask"][i, :height, :width], sample["mask"])
        assert torch.all(batch["mask"][i, height:] == IGNORE_INDEX)
        assert torch.all(batch["mask"][i, :, width:] == IGNORE_INDEX)
        assert torch.all(batch["image"][i, :, height:] == 0) and torch.all(batch["saliency"][i, :, :, width:] == 0)


def test_eps_jitter_options_reach_albumentations():
    transform = train_transform(crop_size=16, color_jitter=0.3, jitter_hue=0.1, jitter_p=1.0, interpolation="bicubic")
    jitter = transform.photometric.transforms[0]
    assert jitter.p == 1.0 and tuple(jitter.hue) == pytest.approx((-0.1, 0.1))
    assert tuple(jitter.brightness) == pytest.approx((0.7, 1.3))
    import cv2

    assert transform.spatial.transforms[0].interpolation == cv2.INTER_CUBIC
    with pytest.raises(ValueError, match="interpolation"):
        train_transform(crop_size=16, interpolation="area")


def test_eval_transform_scale_enlarges_image_saliency_and_mask_before_eval_size():
    # a 10x20 (h x w) picture: left half class 1 (value 100), right half class 2 (value 200); scale 2 -> 20x40
    mask = np.zeros((10, 20), np.uint8)
    mask[:, :10], mask[:, 10:] = 1, 2
    image = np.repeat(np.where(mask == 1, 100, 200).astype(np.uint8)[..., None], 3, axis=2)
    saliency = (mask == 2).astype(np.float32)
    out = eval_transform(None, scale=2.0)(image, mask, saliency)
    m, s = out["mask"].numpy(), out["saliency"][0].numpy()
    assert m.shape == (20, 40) and s.shape == (20, 40)
    expected = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)  # nearest: every pixel becomes a 2x2 block
    np.testing.assert_array_equal(m, expected)
    brightness = _denormalized(out["image"]).mean(axis=2)
    assert np.abs(brightness[:, :19] - 100).max() < 1 and np.abs(brightness[:, 21:] - 200).max() < 1
    assert np.all(s[:, :19] == 0) and np.allclose(s[:, 21:], 1.0, atol=1e-6)
    # then eval_size: 20x40 shrunk to a long side of 32 (16x32), padded to 32x32
    padded = eval_transform(32, scale=2.0)(image, mask, saliency)["mask"].numpy()
    assert padded.shape == (32, 32) and np.all(padded[16:] == IGNORE_INDEX) and IGNORE_INDEX not in padded[:16]
    with pytest.raises(ValueError, match="eval scale must be > 0"):
        eval_transform(None, scale=0.0)


# ------------------------------------------------------------------ item 18: stage-3 scaling resizes masks as PIL does
def _block_mask() -> np.ndarray:
    mask = np.zeros((36, 52), np.uint8)
    mask[3:20, 5:17], mask[11:33, 23:41], mask[25:36, 44:52], mask[0:7, 30:49] = 1, 2, 3, 255
    return mask


@pytest.mark.parametrize("scale", [0.75, 1.25])
def test_scale_augmentation_resizes_the_mask_with_pils_nearest(scale: float) -> None:
    from epspp.data.transforms import train_transform

    mask = _block_mask()
    height, width = int(36 * scale), int(52 * scale)  # deeplab-pytorch: int(h * scale)
    expected = np.asarray(Image.fromarray(mask).resize((width, height), resample=Image.NEAREST))
    cv2_nearest = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    assert (cv2_nearest != expected).mean() > 0.03  # the two filters differ on this mask
    transform = train_transform(80, scales=[scale], color_jitter=0.0)
    image = np.zeros((36, 52, 3), np.uint8)
    for _ in range(4):  # flipped or not
        got = transform(image, mask, None)["mask"].numpy()
        assert got.shape == (80, 80) and (got[height:] == 255).all() and (got[:, width:] == 255).all()
        assert np.array_equal(got[:height, :width], expected) or np.array_equal(got[:height, :width], expected[:, ::-1])


# ------------------------------------------------------------------ variation pass: options away from their defaults
@pytest.mark.parametrize(("strength", "hue", "p"), [(0.0, 0.1, 0.7), (0.0, 0.0, 0.0), (0.2, 0.0, 0.7)])
def test_the_jitter_runs_with_only_a_hue_and_each_strength_reaches_its_parameter(
    strength: float, hue: float, p: float
) -> None:
    """A hue alone (EPS's brightness/contrast/saturation off) still jitters at jitter_p; nothing to jitter: p = 0."""
    jitter = train_transform(crop_size=16, color_jitter=strength, jitter_hue=hue, jitter_p=0.7).photometric.transforms[
        0
    ]
    assert jitter.p == p
    for name in ("brightness", "contrast", "saturation"):
        assert tuple(getattr(jitter, name)) == pytest.approx((1 - strength, 1 + strength)), name
    assert tuple(jitter.hue) == pytest.approx((-hue, hue))


def test_training_normalizes_with_the_given_mean_and_std() -> None:
    """(255, 0, 51) with mean 0.5 and std (0.5, 0.25, 0.1): (1, -2, -3); the padding of the 6x10 image stays 0."""
    image = np.full((6, 10, 3), (255, 0, 51), np.uint8)
    transform = train_transform(
        crop_size=10, resize_long=(10, 10), color_jitter=0.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.1)
    )
    out = transform(image, np.zeros((6, 10), np.uint8))
    content = torch.from_numpy(out["mask"].numpy() != IGNORE_INDEX)
    assert int(content.sum()) == 60
    for channel, value in enumerate((1.0, -2.0, -3.0)):
        np.testing.assert_allclose(out["image"][channel][content].numpy(), value, atol=1e-5)
        assert torch.all(out["image"][channel][~content] == 0.0)


def test_the_eps_crop_pads_at_a_random_place_and_the_deeplab_one_at_the_top_left() -> None:
    image, mask = np.full((20, 16, 3), 90, np.uint8), np.zeros((20, 16), np.uint8)
    places = {}
    for scales in (None, (1.0,)):
        transform = train_transform(crop_size=32, resize_long=(20, 20), color_jitter=0.0, scales=scales)
        torch.manual_seed(0)
        corners = set()
        for _ in range(REPEATS):
            rows, columns = np.nonzero(transform(image, mask)["mask"].numpy() != IGNORE_INDEX)
            assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == (20, 16)
            corners.add((int(rows.min()), int(columns.min())))
        places[scales] = corners
    assert len(places[None]) > 3 and places[(1.0,)] == {(0, 0)}


@pytest.mark.parametrize(("name", "flag"), [("bilinear", cv2.INTER_LINEAR), ("bicubic", cv2.INTER_CUBIC)])
def test_the_interpolation_reaches_the_long_side_resize_and_every_deeplab_scale(name: str, flag: int) -> None:
    for scales, count in ((None, 1), ((0.5, 1.5), 2)):
        resize = train_transform(crop_size=8, interpolation=name, scales=scales).spatial.transforms[0]
        ops = list(getattr(resize, "transforms", [resize]))
        assert len(ops) == count and all(op.interpolation == flag for op in ops)


def test_the_augmentation_seed_of_a_ddp_process_without_workers_mixes_in_its_rank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every rank starts from the same seed_everything state: rank r draws SeedSequence([seed, r]), not the seed."""
    from epspp.data import transforms

    torch.manual_seed(5)
    drawn = int(torch.randint(0, 2**62, (1,)).item())
    monkeypatch.setattr(transforms.dist, "is_available", lambda: True)
    monkeypatch.setattr(transforms.dist, "is_initialized", lambda: True)
    seeds = {}
    for rank in (0, 1):
        monkeypatch.setattr(transforms.dist, "get_rank", lambda rank=rank: rank)
        torch.manual_seed(5)
        seeds[rank] = transforms.augmentation_seed()
    assert seeds == {r: int(np.random.SeedSequence([drawn, r]).generate_state(1, np.uint64)[0]) for r in (0, 1)}
    assert seeds[0] != seeds[1] != drawn
    monkeypatch.setattr(transforms.dist, "is_initialized", lambda: False)
    torch.manual_seed(5)
    assert transforms.augmentation_seed() == drawn  # one process: the drawn seed itself
