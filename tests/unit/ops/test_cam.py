"""CAM ops (object maps, normalization, mask assembly, multi-scale + flip inference) and predict_step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from epspp.errors import ConfigError
from epspp.models import LocalizationModule
from epspp.models.checkpoint import CheckpointMismatchError
from epspp.ops import maps_to_mask, multiscale_maps, normalize_maps, object_maps


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
    maps = torch.tensor([[[0.0, 2.0], [1.0, 4.0]],
                         [[5.0, 5.0], [5.0, 5.0]],  # absent from the label: must vanish
                         [[0.1, 0.2], [0.3, 0.4]]])[None]
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
    maps = torch.tensor([[[0.1, 0.5, 0.3, 0.9]],     # class 1
                         [[0.2, 0.6, 0.25, 0.0]]])[None]  # class 2
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


# ------------------------------------------------------------------ predict_step
def _module(**kwargs) -> LocalizationModule:
    torch.manual_seed(0)
    args = dict(num_classes=3, backbone="resnet10t", backbone_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8},
                output_stride=8, pamr_iter=2, pamr_dilations=(1, 2), scales=(0.5, 1.0))
    return LocalizationModule(**(args | kwargs)).eval()


def _batch(label: list[float], height: int = 37, width: int = 53) -> dict:
    return {"id": ["x"], "image": torch.randn(1, 3, height, width), "label": torch.tensor([label]),
            "mask": torch.zeros(1, height, width, dtype=torch.long), "has_mask": torch.tensor([True])}


@pytest.mark.parametrize("saliency_loss, kind", [("none", "relu"), ("ird", "softmax"), ("eps", "softmax")])
def test_map_kind_follows_the_method(saliency_loss: str, kind: str) -> None:
    assert _module(saliency_loss=saliency_loss).map_kind == kind
    module = _module(saliency_loss="ird")
    module.on_load_checkpoint({"hyper_parameters": {"num_classes": 3, "saliency_loss": saliency_loss}})
    assert module.map_kind == kind


def test_checkpoint_of_another_class_count_is_refused() -> None:
    with pytest.raises(CheckpointMismatchError, match="5 object classes.*has 3"):
        _module().on_load_checkpoint({"hyper_parameters": {"num_classes": 5}})


@pytest.mark.parametrize("refine", ["none", "pamr"])
def test_predict_step_full_resolution_mask_of_labelled_classes(refine: str, monkeypatch) -> None:
    module = _module(refine=refine, bg_threshold=0.2)
    calls = []
    original = module.pamr.forward
    monkeypatch.setattr(module.pamr, "forward", lambda *a: calls.append(a) or original(*a))
    with torch.no_grad():
        out = module.predict_step(_batch([0.0, 1.0, 0.0]), 0)
    assert calls if refine == "pamr" else not calls
    assert out["id"] == ["x"]
    assert out["mask"].shape == (1, 37, 53)
    assert out["scores"].shape == (1, 4, 37, 53)
    assert set(out["mask"].unique().tolist()) <= {0, 2}  # background or the labelled class 2
    assert torch.equal(out["mask"], out["scores"].argmax(1))
    if refine == "none":
        assert torch.equal(out["scores"][:, 0], torch.full((1, 37, 53), 0.2))
        assert torch.equal(out["scores"][:, [1, 3]], torch.zeros(1, 2, 37, 53))
        assert float(out["scores"][:, 2].max()) == pytest.approx(1.0, abs=1e-4)


def test_predict_step_absent_classes_never_win(monkeypatch) -> None:
    module = _module(saliency_loss="none", bg_threshold=0.5)

    def fake_forward(images: torch.Tensor) -> torch.Tensor:  # class 3 dominates, class 1 = image channel 0
        n, _, h, w = images.shape
        logits = torch.zeros(n, 4, h, w)
        logits[:, 2] = 10.0
        logits[:, 0] = images[:, 0]
        return logits

    monkeypatch.setattr(module, "forward", fake_forward)
    batch = _batch([1.0, 0.0, 0.0], 20, 30)
    batch["image"][:, 0] = torch.linspace(0.0, 1.0, 30)  # a left-to-right ramp
    mask = module.predict_step(batch, 0)["mask"][0]
    # class 3 (channel 2) is not labelled; class 1's normalized ramp beats 0.5 on the right side only
    assert set(mask.unique().tolist()) == {0, 1}
    assert (mask[:, :10] == 0).all() and (mask[:, -10:] == 1).all()
    # no label at all: an all-background mask
    batch["label"] = torch.zeros(1, 3)
    assert (module.predict_step(batch, 0)["mask"] == 0).all()


def test_predict_step_refuses_batches_of_several_images() -> None:
    batch = _batch([1.0, 0.0, 0.0])
    batch["image"] = batch["image"].expand(2, -1, -1, -1)
    with pytest.raises(ValueError, match="one image per batch"):
        _module().predict_step(batch, 0)


# ------------------------------------------------------------------ saliency warm-ups
@pytest.mark.parametrize("kind", ["eps", "ird"])
def test_saliency_warmup_ends_at_its_step(monkeypatch, kind):
    """Before ``*_warmup_steps`` L_sal is the warm-up form (eps: no overlap test; ird: no drop), from then on
    the paper's; values checked against the loss functions called directly."""
    from epspp.losses import eps_saliency_loss, ird_saliency_loss

    module = _module(saliency_loss=kind, eps_warmup_steps=3, ird_warmup_steps=3, tau=0.99)
    gen = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2, 3, 32, 32, generator=gen), "saliency": torch.rand(2, 1, 32, 32, generator=gen),
             "label": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])}
    with torch.no_grad():
        cam = module(batch["image"])
        refined = module.refine_maps(batch["image"], cam)

    def expected(warm: bool) -> torch.Tensor:
        if kind == "eps":
            return eps_saliency_loss(cam, batch["saliency"], batch["label"], 0.99, 0.5, overlap_test=not warm)
        return ird_saliency_loss(cam, batch["saliency"], batch["label"], refined, drop=not warm)

    assert not torch.allclose(expected(True), expected(False))  # the two forms differ on this batch
    for step, warm in [(0, True), (2, True), (3, False), (10, False)]:
        monkeypatch.setattr(type(module), "global_step", property(lambda self, s=step: s))
        with torch.no_grad():
            loss, _ = module.saliency_term(batch, cam)
        torch.testing.assert_close(loss, expected(warm))


def test_ird_refine_none_compares_the_unrefined_maps_with_the_saliency():
    """The ablation ``ird_refine: none``: N = B(M_fg) XOR B(M_s) on the softmax maps themselves (written out
    here from the formula); the paper's ``pamr`` refines them first."""
    gen = torch.Generator().manual_seed(3)
    images, saliency = torch.randn(2, 3, 32, 32, generator=gen), torch.rand(2, 1, 32, 32, generator=gen)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    plain, paper = _module(ird_refine="none"), _module(pamr_iter=10)
    cam = plain(images).detach()
    assert torch.equal(cam, paper(images).detach())  # same seed, same weights: only M_r differs
    # the default reading of B(): each labelled class's softmax map over its maximum, max over the labelled
    maps = cam.softmax(dim=1)[:, :3]
    normalized = maps / maps.amax(dim=(2, 3), keepdim=True)
    reference = torch.stack([normalized[i, labels[i].bool()].amax(dim=0) for i in range(2)])[:, None]
    small = torch.nn.functional.interpolate(saliency, cam.shape[-2:], mode="nearest")
    expected = (reference > 0.5) ^ (small > 0.5)
    assert expected.any() and not expected.all()
    batch = {"image": images, "saliency": saliency, "label": labels}
    _, ird = plain.saliency_term(batch, cam)
    assert torch.equal(ird["inconsistent"], expected)
    torch.testing.assert_close(ird["threshold_map"], reference)
    assert torch.equal(plain.refine_maps(images, cam), cam.softmax(dim=1))  # M_r = M
    assert not torch.allclose(paper.refine_maps(images, cam), cam.softmax(dim=1), atol=1e-3)  # PAMR moves them
    with pytest.raises(ConfigError, match="ird_refine must be pamr"):
        _module(ird_refine="crf")
