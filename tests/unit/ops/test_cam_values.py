"""Issue 21 item 21: multi-scale maps and EPS's bicubic resize against formulations written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from epspp.ops.cam import multiscale_maps, pil_bicubic_resize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) -> (C, height, width): half-pixel centres (align_corners=False), edges clamped, no antialias."""

    def taps(size_out: int, size_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.maximum((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0.0)
        low = np.minimum(np.floor(source).astype(int), size_in - 1)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, source - low

    y0, y1, fy = taps(height, array.shape[1])
    x0, x1, fx = taps(width, array.shape[2])
    rows = array[:, y0] * (1 - fy)[None, :, None] + array[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def pool2(array: np.ndarray) -> np.ndarray:
    """2x2 average pooling (floor), the stand-in network's stride."""
    c, h, w = array.shape
    return array[:, : h // 2 * 2, : w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def forward_cam(images: torch.Tensor) -> torch.Tensor:
    """A network of stride 2: channel 0 shifted to be partly negative is the object map, channel 1 background."""
    pooled = F.avg_pool2d(images[:, :2], 2)
    return torch.cat([pooled[:, :1] - 0.2, pooled[:, 1:]], dim=1)


@pytest.mark.parametrize("flip", [False, True])
def test_multiscale_maps_match_a_numpy_bilinear_pipeline(flip: bool) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 14, 22)).astype(np.float32)
    scales = (0.5, 1.0, 1.5)
    got = multiscale_maps(forward_cam, torch.from_numpy(image)[None], scales, flip=flip, kind="relu")[0].numpy()
    expected = np.zeros((1, 14, 22))
    for scale in scales:
        h, w = round(14 * scale), round(22 * scale)
        for mirrored in (False, True) if flip else (False,):
            source = image[:, :, ::-1] if mirrored else image
            scaled = source if (h, w) == (14, 22) else bilinear(source.astype(np.float64), h, w)
            cam = np.maximum(pool2(scaled[:1]) - 0.2, 0.0)
            up = bilinear(cam, 14, 22)
            expected += up[:, :, ::-1] if mirrored else up
    assert np.abs(expected).max() > 0.1 and np.ptp(expected) > 0.1  # a map that varies: the mode matters
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pil_bicubic_resize_is_pils_bicubic_of_the_picture() -> None:
    rng = np.random.default_rng(1)
    pictures = rng.integers(0, 256, (2, 13, 21, 3), dtype=np.uint8)
    mean, std = np.array(MEAN), np.array(STD)
    normalized = torch.from_numpy(((pictures / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))
    got = pil_bicubic_resize(normalized, (17, 9), MEAN, STD).numpy()
    assert got.shape == (2, 3, 17, 9)
    for index, picture in enumerate(pictures):
        resized = np.asarray(Image.fromarray(picture).resize((9, 17), resample=Image.BICUBIC)) / 255.0
        expected = ((resized - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(got[index], expected, atol=1e-5)
        other = np.asarray(Image.fromarray(picture).resize((9, 17), resample=Image.BILINEAR)) / 255.0
        assert np.abs(((other - mean) / std).transpose(2, 0, 1) - expected).max() > 0.05  # the filter shows


def test_bicubic_resize_is_within_a_few_grey_levels_of_pils_on_photos() -> None:
    """``bicubic_resize`` (on the device) against PIL's bicubic, on two real photos, at two of the recipe's scales:
    over 97% of the pixels equal, none off by more than 2 grey levels (one pass without PIL's clipping of the
    intermediate result: up to 15 levels at saturated edges)."""
    from skimage import data

    from epspp.ops.cam import bicubic_resize

    mean, std = np.array(MEAN), np.array(STD)
    for photo in (data.coffee()[:375, :500], data.astronaut()[:201, :257]):
        normalized = torch.from_numpy(((photo / 255.0 - mean) / std).transpose(2, 0, 1).astype(np.float32))[None]
        height, width = photo.shape[:2]
        for scale in (0.5, 1.5):
            size = (round(height * scale), round(width * scale))
            got = bicubic_resize(normalized, size, MEAN, STD)[0].numpy().transpose(1, 2, 0)
            levels = (got * std + mean) * 255.0
            pil = np.asarray(Image.fromarray(photo).resize(size[::-1], resample=Image.BICUBIC)).astype(np.float64)
            np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # uint8 values, as PIL's
            difference = np.abs(np.round(levels) - pil)
            assert difference.max() <= 2 and (difference < 0.5).mean() > 0.97, (difference.max(), difference.mean())


def test_multiscale_maps_of_chosen_classes_are_those_channels_of_all_maps() -> None:
    def network(images: torch.Tensor) -> torch.Tensor:  # stride 2, 4 object channels + background
        pooled = F.avg_pool2d(images, 2)
        return torch.cat([pooled, pooled[:, :2] * 2, pooled[:, :1] - 1], dim=1)[:, :5]

    image = torch.randn(1, 3, 15, 26, generator=torch.Generator().manual_seed(2))
    every = multiscale_maps(network, image, (0.5, 1.0, 1.5))
    chosen = multiscale_maps(network, image, (0.5, 1.0, 1.5), classes=torch.tensor([3, 1]))
    torch.testing.assert_close(chosen, every[:, [3, 1]])
