"""PAMR (Araslanov & Roth, CVPR 2020): the lean implementation against a naive one that materializes
every neighbour, plus invariants (constants, convexity), autograd and dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import epspp.ops.pamr as pamr_module
from epspp.ops import PAMR


def naive_pamr(image: torch.Tensor, masks: torch.Tensor, num_iter: int, dilations: tuple[int, ...]) -> torch.Tensor:
    """Straight from the paper's formulation: unfold every 3x3 dilated neighbourhood (replicate padding)."""
    b, k, h, w = image.shape
    masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=True)
    centre = 4  # index of p in the row-major 3x3 grid

    def grids(x: torch.Tensor) -> torch.Tensor:  # (B, K, H, W) -> (B, K, 9 * len(dilations), H, W)
        per_dilation = []
        for d in dilations:
            cols = F.unfold(F.pad(x, [d] * 4, mode="replicate"), 3, dilation=d)  # (B, K * 9, H * W)
            per_dilation.append(cols.view(x.shape[0], x.shape[1], 9, h, w))
        return torch.cat(per_dilation, 2)

    def neighbours(x: torch.Tensor) -> torch.Tensor:  # drop the centre of every 3x3 grid
        g = grids(x).view(x.shape[0], x.shape[1], len(dilations), 9, h, w)
        keep = [i for i in range(9) if i != centre]
        return g[:, :, :, keep].flatten(2, 3)

    std = grids(image).std(2, keepdim=True)  # (B, K, 1, H, W), unbiased, p counted once per dilation
    diff = (image.unsqueeze(2) - neighbours(image)).abs()
    aff = F.softmax((-diff / (1e-8 + 0.1 * std)).mean(1, keepdim=True), 2)  # (B, 1, P, H, W)
    for _ in range(num_iter):
        masks = (neighbours(masks) * aff).sum(2)
    return masks


def random_image(b: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    img = torch.randn(b, 3, h, w, generator=gen) * 2.0 + 0.5
    return F.avg_pool2d(img, 3, 1, 1)  # some spatial correlation, like a natural image


CASES = [
    # B, C, H, W, h, w, dilations, num_iter
    (2, 3, 17, 23, 5, 6, (1, 2, 4), 3),
    (1, 21, 30, 20, 30, 20, (1, 2, 4, 8, 12, 24), 10),  # image smaller than the largest dilation
    (3, 4, 9, 40, 3, 10, (1, 3), 1),
    (1, 2, 64, 48, 8, 6, (1, 2, 4, 8, 12, 24), 10),
    (2, 1, 1, 7, 1, 7, (1, 2), 2),  # a single row
]


@pytest.mark.parametrize(("b", "c", "hh", "ww", "h", "w", "dilations", "num_iter"), CASES)
def test_matches_naive_formulation(b, c, hh, ww, h, w, dilations, num_iter):
    gen = torch.Generator().manual_seed(hh * 1000 + ww)
    image = random_image(b, hh, ww, gen)
    masks = torch.rand(b, c, h, w, generator=gen)
    expected = naive_pamr(image, masks, num_iter, dilations)
    with torch.no_grad():
        out = PAMR(num_iter, dilations)(image, masks)
    assert out.shape == (b, c, hh, ww)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_cpu_row_blocks_match(monkeypatch):
    """Single-threaded CPU runs use row blocks: force tiny ones and compare."""
    monkeypatch.setattr(pamr_module, "_CPU_BLOCK", 50)
    gen = torch.Generator().manual_seed(1)
    image = random_image(2, 19, 13, gen)
    masks = torch.rand(2, 3, 7, 5, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = PAMR(4, (1, 2, 5))(image, masks)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out, naive_pamr(image, masks, 4, (1, 2, 5)), atol=1e-5, rtol=0)


def test_default_configuration():
    pamr = PAMR()
    assert pamr.num_iter == 10 and pamr.dilations == (1, 2, 4, 8, 12, 24)
    assert len(pamr.state_dict()) == 0  # nothing to store in checkpoints


def test_zero_iterations_only_resizes():
    gen = torch.Generator().manual_seed(2)
    image, masks = random_image(1, 8, 10, gen), torch.rand(1, 2, 4, 5, generator=gen)
    out = PAMR(0)(image, masks)
    torch.testing.assert_close(out, F.interpolate(masks, (8, 10), mode="bilinear", align_corners=True))


def test_constant_masks_are_preserved():
    gen = torch.Generator().manual_seed(3)
    image = random_image(2, 21, 16, gen)
    masks = torch.tensor([0.0, 0.3, 1.0, 7.5]).view(1, 4, 1, 1).expand(2, 4, 6, 5)
    out = PAMR()(image, masks)
    torch.testing.assert_close(out, masks[:, :, :1, :1].expand_as(out), atol=1e-6, rtol=1e-5)


def test_output_is_a_convex_combination():
    gen = torch.Generator().manual_seed(4)
    image = random_image(2, 25, 18, gen)
    probs = torch.randn(2, 5, 25, 18, generator=gen).mul(4).softmax(1)
    out = PAMR()(image, probs)
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    # the weights are shared by all channels, so the class probabilities still sum to one
    torch.testing.assert_close(out.sum(1), torch.ones(2, 25, 18), atol=1e-5, rtol=0)
    assert out.amax() <= probs.amax() + 1e-6 and out.amin() >= probs.amin() - 1e-6


def test_autograd_path_matches_inplace_path():
    gen = torch.Generator().manual_seed(5)
    image = random_image(2, 14, 11, gen)
    masks = torch.rand(2, 3, 7, 6, generator=gen)
    pamr = PAMR(5, (1, 2, 4))
    with torch.no_grad():
        fast = pamr(image, masks)
    tracked = pamr(image.requires_grad_(), masks.requires_grad_())
    assert tracked.requires_grad
    torch.testing.assert_close(tracked.detach(), fast, atol=1e-6, rtol=0)
    tracked.sum().backward()
    assert masks.grad is not None and image.grad is not None


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(6)
    image = torch.randn(1, 3, 5, 4, generator=gen, dtype=torch.float64).requires_grad_()
    masks = torch.rand(1, 2, 3, 3, generator=gen, dtype=torch.float64).requires_grad_()
    pamr = PAMR(2, (1, 2))
    assert torch.autograd.gradcheck(pamr, (image, masks), eps=1e-6, atol=1e-5)
    out = pamr(image, masks)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, naive_pamr(image, masks, 2, (1, 2)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    gen = torch.Generator().manual_seed(7)
    image = random_image(1, 16, 12, gen)
    masks = torch.rand(1, 3, 4, 3, generator=gen)
    expected = PAMR(3)(image, masks)
    out = PAMR(3)(image.to(dtype), masks.to(dtype))
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=0)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        PAMR()(torch.rand(2, 3, 8, 8), torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError):
        PAMR(dilations=(0, 1))


# ------------------------------------------- variation pass (issue 34 item 6)
def test_iterations_and_dilations_are_checked_at_their_limits_and_shown_in_the_repr():
    with pytest.raises(ValueError, match="num_iter must be >= 0, got -1"):
        PAMR(-1)
    with pytest.raises(ValueError, match=r"dilations must be positive integers, got \(\)"):
        PAMR(dilations=())
    assert repr(PAMR(3, (1, 2))) == "PAMR(num_iter=3, dilations=(1, 2))"


def test_float64_masks_with_a_float32_image_are_refined_in_float64():
    gen = torch.Generator().manual_seed(8)
    image = random_image(1, 11, 9, gen)
    masks = torch.rand(1, 2, 11, 9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        out = PAMR(3, (1, 2))(image, masks)
        single = PAMR(3, (1, 2))(image.double(), masks.float())
    assert out.dtype == torch.float64 and single.dtype == torch.float32
    torch.testing.assert_close(out, naive_pamr(image.double(), masks, 3, (1, 2)), atol=1e-12, rtol=0)
