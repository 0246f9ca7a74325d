"""CAM ops: object maps, normalization, mask assembly, multi-scale + flip inference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from epspp.ops import labelled_argmax, maps_to_mask, multiscale_maps, normalize_maps, object_maps, with_background


# ------------------------------------------------------------------ object_maps
def test_object_maps_softmax_over_all_channels_keeps_objects() -> None:
    # one pixel, C = 2 object channels then the background channel
    logits = torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    total = math.exp(1.0) + math.exp(2.0) + math.exp(0.5)
    maps = object_maps(logits, "softmax")
    assert maps.shape == (1, 2, 1, 1)
    assert maps.flatten().tolist() == pytest.approx([math.exp(1.0) / total, math.exp(2.0) / total], rel=1e-6)


def test_object_maps_relu_drops_background_and_negatives() -> None:
    logits = torch.tensor([[-1.0, 3.0], [2.0, -0.5], [9.0, 9.0]]).view(1, 3, 1, 2)
    maps = object_maps(logits, "relu")
    assert maps.shape == (1, 2, 1, 2)
    assert maps[0, :, 0].tolist() == [[0.0, 3.0], [2.0, 0.0]]


def test_object_maps_half_precision_input_gives_float32() -> None:
    assert object_maps(torch.randn(1, 4, 3, 3).half(), "softmax").dtype == torch.float32


# --------------------------------------------------------------- normalize_maps
def test_normalize_maps_zeroes_absent_classes_and_peaks_at_one() -> None:
    maps = torch.tensor(
        [
            [[0.0, 2.0], [1.0, 4.0]],
            [[5.0, 5.0], [5.0, 5.0]],  # absent from the label: must vanish
            [[0.1, 0.2], [0.3, 0.4]],
        ]
    )[None]
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    out = normalize_maps(maps, labels)
    assert torch.allclose(out[0, 0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]), atol=1e-4)
    assert torch.equal(out[0, 1], torch.zeros(2, 2))
    assert torch.allclose(out[0, 2], torch.tensor([[0.25, 0.5], [0.75, 1.0]]), atol=1e-4)
    assert out[0, [0, 2]].flatten(1).amax(1).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


def test_normalize_maps_no_label_and_all_zero_maps_stay_zero() -> None:
    maps = torch.rand(2, 3, 4, 5)
    maps[1, 0] = 0.0
    out = normalize_maps(maps, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------ maps_to_mask
def test_maps_to_mask_background_threshold() -> None:
    maps = torch.tensor(
        [
            [[0.1, 0.5, 0.3, 0.9]],  # class 1
            [[0.2, 0.6, 0.25, 0.0]],
        ]
    )[None]  # class 2
    # pixel 0: max 0.2 < 0.3 -> background; pixel 1: class 2 (0.6); pixel 2: 0.3 ties the threshold ->
    # background (first maximum); pixel 3: class 1
    assert maps_to_mask(maps, 0.3).tolist() == [[[0, 2, 0, 1]]]
    assert maps_to_mask(maps, 0.05).tolist() == [[[2, 2, 1, 1]]]
    assert maps_to_mask(maps, 1.0).tolist() == [[[0, 0, 0, 0]]]


# --------------------------------------------------------------- multiscale_maps
class Recorder:
    """A fake network: logits = a fixed pointwise function of the image plus a left-to-right ramp.

    The ramp makes the network itself not flip-equivariant; the flip-averaged result must be.
    Three input channels -> C + 1 = 3 output maps (C = 2), at stride ``stride``.
    """

    def __init__(self, stride: int = 1, ramp: float = 0.0) -> None:
        self.stride, self.ramp, self.calls = stride, ramp, []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(images.clone())
        out = images * 2.0 - 0.5
        if self.ramp:
            out = out + self.ramp * torch.linspace(0, 1, images.shape[-1])
        if self.stride > 1:
            out = F.avg_pool2d(out, self.stride, ceil_mode=True)
        return out


@pytest.mark.parametrize("kind", ["relu", "softmax"])
def test_multiscale_of_a_constant_image_is_predictable(kind: str) -> None:
    values = torch.tensor([0.7, 0.2, -0.3])
    image = values.view(1, 3, 1, 1).expand(1, 3, 37, 53).contiguous()
    scales = (0.5, 1.0, 1.5, 2.0)
    out = multiscale_maps(Recorder(stride=8), image, scales, flip=True, kind=kind)
    logits = values * 2.0 - 0.5
    per_call = logits.clamp(min=0)[:2] if kind == "relu" else logits.softmax(0)[:2]
    expected = (2 * len(scales) * per_call).view(1, 2, 1, 1).expand(1, 2, 37, 53)
    assert out.shape == (1, 2, 37, 53)
    assert out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-5)


def test_multiscale_batches_flips_with_originals_at_every_scale() -> None:
    image = torch.randn(1, 3, 37, 53)
    scales = (0.5, 1.0, 1.5, 2.0)
    net = Recorder(stride=8)
    multiscale_maps(net, image, scales, flip=True, kind="relu")
    assert len(net.calls) == len(scales)  # one forward per scale, flipped copy in the same batch
    for batch, scale in zip(net.calls, scales, strict=True):
        assert batch.shape == (2, 3, max(1, round(37 * scale)), max(1, round(53 * scale)))
        assert torch.equal(batch[1], batch[0].flip(-1))
    assert torch.equal(net.calls[1][0], image[0])  # scale 1 is the image itself

    net = Recorder(stride=8)
    multiscale_maps(net, image, scales, flip=False, kind="relu")
    assert [b.shape[0] for b in net.calls] == [1, 1, 1, 1]


def test_multiscale_flip_makes_the_maps_flip_equivariant() -> None:
    torch.manual_seed(0)
    image = torch.randn(1, 3, 37, 53)
    net = Recorder(stride=4, ramp=3.0)
    for kind in ("relu", "softmax"):
        out = multiscale_maps(net, image, flip=True, kind=kind)
        out_of_flipped = multiscale_maps(net, image.flip(-1), flip=True, kind=kind)
        assert out.shape == (1, 2, 37, 53)
        assert torch.allclose(out_of_flipped, out.flip(-1), atol=1e-5)
    # without the flipped copies the ramp breaks the symmetry: the check above has teeth
    out = multiscale_maps(net, image, flip=False, kind="relu")
    assert not torch.allclose(multiscale_maps(net, image.flip(-1), flip=False, kind="relu"), out.flip(-1), atol=1e-3)


def test_multiscale_flipped_logits_are_flipped_back() -> None:
    """An image whose left half is bright: the summed maps must stay bright on the left only."""
    image = torch.full((1, 3, 16, 21), -1.0)
    image[..., :8] = 1.0
    out = multiscale_maps(Recorder(), image, scales=(1.0,), flip=True, kind="relu")
    assert torch.allclose(out[0, 0, :, :7], torch.full((16, 7), 3.0))  # relu(1*2-0.5) * 2 copies
    assert torch.allclose(out[0, 0, :, 9:], torch.zeros(16, 12))


@pytest.mark.parametrize("bg_threshold", [0.0, 0.2, 0.999])
def test_labelled_argmax_is_the_argmax_of_all_channels(bg_threshold: float) -> None:
    """Ties included: labelled maps equal to the background, equal to each other, and all zero at some pixels."""
    labels = torch.tensor([[0.0, 1, 0, 0, 1, 1]])  # classes 1, 4, 5 (0-based): score channels 2, 5, 6
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(1, 6, 5, 9, generator=gen).round(decimals=1) * labels[:, :, None, None]  # ties; others 0
    maps[:, :, 0, :] = 0.0  # pixels where every labelled map is 0
    maps[:, 4, 1, :] = bg_threshold  # a labelled map equal to the background
    scores = with_background(maps, bg_threshold)
    mask = labelled_argmax(scores, labels)
    assert mask.shape == (1, 5, 9) and mask.tolist() == scores.argmax(dim=1).tolist()
    assert set(mask.unique().tolist()) <= {0, 2, 5, 6} and mask.max() > 0
    assert labelled_argmax(scores[:, :1].expand(1, 7, 5, 9), torch.zeros(1, 6)).tolist() == [[[0] * 9] * 5]


def test_a_scale_that_rounds_a_side_to_zero_runs_the_network_on_one_pixel() -> None:
    """37x53 at scale 0.01 rounds to 0x1: each side is kept at least 1 pixel (variation pass, issue 34 item 6)."""
    net = Recorder()
    out = multiscale_maps(net, torch.randn(1, 3, 37, 53), scales=(0.01,), flip=False, kind="relu")
    assert [tuple(batch.shape) for batch in net.calls] == [(1, 3, 1, 1)] and out.shape == (1, 2, 37, 53)
