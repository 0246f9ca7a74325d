"""Losses: classification, EPS (CVPR 2021) and EPS++ IRD (TPAMI 2023) saliency losses.

The tiny cases use logits = log(probabilities), so that softmax gives back the probabilities below and
every expected value can be worked out by hand (comments show the arithmetic).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from epspp.losses import (
    classification_loss,
    eps_saliency_loss,
    ird_saliency_loss,
    ird_threshold_map,
    segmentation_loss,
)

# 2 object classes + background (last), 2x2 pixels p0 p1 / p2 p3.
PROBS = torch.tensor(
    [
        [[0.7, 0.6], [0.1, 0.2]],  # class 0
        [[0.2, 0.1], [0.8, 0.2]],  # class 1
        [[0.1, 0.3], [0.1, 0.6]],  # background
    ]
)
SALIENCY = torch.tensor([[0.9, 0.2], [0.8, 0.1]])  # rounds to 1 0 / 1 0


def cam_logits(batch: int = 1) -> torch.Tensor:
    return PROBS.log().unsqueeze(0).repeat(batch, 1, 1, 1)


def saliency(batch: int = 1) -> torch.Tensor:
    return SALIENCY.view(1, 1, 2, 2).repeat(batch, 1, 1, 1)


def reference_eps_loss(cam, sal, labels, tau, lam):
    """The EPS authors' formulation (boolean channel selection), device-free, for cross-checks."""
    b, c1, h, w = cam.shape
    c = c1 - 1
    sal = F.interpolate(sal, size=(h, w))
    label_map = labels.view(b, c, 1, 1).expand(b, c, h, w).bool()
    pred = F.softmax(cam, dim=1)
    obj = torch.round(pred[:, :-1].detach())
    ratio = (obj * torch.round(sal)).view(b, c, -1).sum(-1) / (obj + 1e-4).view(b, c, -1).sum(-1)
    valid = (ratio > tau).view(b, c, 1, 1).expand(b, c, h, w)
    fg_sel = torch.zeros(b, c1, h, w, dtype=torch.bool)
    bg_sel = torch.zeros(b, c1, h, w, dtype=torch.bool)
    bg_sel[:, c] = True
    fg_sel[:, :-1] = label_map & valid
    bg_sel[:, :-1] = label_map & ~valid
    fg, bg = torch.zeros_like(pred), torch.zeros_like(pred)
    fg[fg_sel] = pred[fg_sel]
    bg[bg_sel] = pred[bg_sel]
    estimate = fg.sum(1, keepdim=True) * lam + (1 - bg.sum(1, keepdim=True)) * (1 - lam)
    return F.mse_loss(estimate, sal)


# ------------------------------------------------------------------------------------ classification
def test_classification_loss_hand_value():
    # sigmoid(0) = 0.5 for every class: -log(0.5) per class, whatever the label
    assert classification_loss(torch.zeros(2, 3), torch.tensor([[1.0, 0, 1], [0, 0, 0]])).item() == pytest.approx(
        math.log(2)
    )
    logits, labels = torch.randn(4, 20), (torch.rand(4, 20) > 0.7).float()
    torch.testing.assert_close(classification_loss(logits, labels), F.multilabel_soft_margin_loss(logits, labels))


# ----------------------------------------------------------------------------------------------- EPS
def test_eps_overlap_below_tau_sends_class_to_background():
    # class 0: round(M_0) = 1 1 / 0 0, overlap with round(M_s) = 1 pixel, ratio 1 / (2 + 4e-4) < 0.5
    #   -> background; class 1: ratio 1 / (1 + 4e-4) > 0.5 -> foreground.
    # M_fg = M_1 = .2 .1 .8 .2 ; M_bg = M_0 + M_bg = .8 .9 .2 .8 ; est = (M_fg + 1 - M_bg) / 2 = .2 .1 .8 .2
    # loss = ((.2-.9)^2 + (.1-.2)^2 + 0 + (.2-.1)^2) / 4 = .51 / 4
    loss = eps_saliency_loss(cam_logits(), saliency(), torch.tensor([[1.0, 1.0]]), tau=0.5)
    assert loss.item() == pytest.approx(0.51 / 4, abs=1e-6)


def test_eps_overlap_exactly_at_tau_sends_class_to_background():
    # class 0's ratio 1 / (2 + 4e-4), computed in float32 as the loss does, taken as tau: a tie is not "> tau",
    # so class 0 joins the background as in the case below tau (.51 / 4), not the foreground (.35 / 4)
    area = (torch.tensor([1.0, 1.0, 0.0, 0.0]) + 1e-4).sum()
    tau = float(torch.tensor(1.0) / area)
    loss = eps_saliency_loss(cam_logits(), saliency(), torch.tensor([[1.0, 1.0]]), tau=tau)
    assert loss.item() == pytest.approx(0.51 / 4, abs=1e-6)


def test_eps_overlap_above_tau_is_foreground():
    # tau 0.4: both classes foreground; M_fg = .9 .7 .9 .4, M_bg = .1 .3 .1 .6, est = .9 .7 .9 .4
    # loss = (0 + .5^2 + .1^2 + .3^2) / 4 = .35 / 4
    loss = eps_saliency_loss(cam_logits(), saliency(), torch.tensor([[1.0, 1.0]]), tau=0.4)
    assert loss.item() == pytest.approx(0.35 / 4, abs=1e-6)


def test_eps_without_overlap_test_counts_every_labelled_class_as_foreground():
    # the warm-up: class 0 (ratio < 0.5, background above) is foreground too, as at tau 0.4:
    # loss = .35 / 4 (see test_eps_overlap_above_tau_is_foreground)
    loss = eps_saliency_loss(cam_logits(), saliency(), torch.tensor([[1.0, 1.0]]), tau=0.5, overlap_test=False)
    assert loss.item() == pytest.approx(0.35 / 4, abs=1e-6)
    # an unlabelled class stays out of both sums (as test_eps_unlabelled_classes_...: .3425 / 4)
    labels = torch.tensor([[1.0, 0.0]])
    assert eps_saliency_loss(cam_logits(), saliency(), labels, tau=0.9, overlap_test=False).item() == pytest.approx(
        0.3425 / 4, abs=1e-6
    )


def test_eps_epsilon_is_added_at_every_pixel():
    # class 0 ratio: 1 / (2 + 4 * 1e-4) = 0.49990 (per pixel, as the reference) vs 1 / (2 + 1e-4) = 0.499975
    # (once) vs 0.5 (none). With tau = 0.49995 only the per-pixel version keeps class 0 in the background.
    loss = eps_saliency_loss(cam_logits(), saliency(), torch.tensor([[1.0, 1.0]]), tau=0.49995)
    assert loss.item() == pytest.approx(0.51 / 4, abs=1e-6)


def test_eps_unlabelled_classes_are_neither_foreground_nor_background():
    # labels (1, 0), tau 0.4: class 0 foreground, class 1 ignored, background channel alone in M_bg.
    # M_fg = .7 .6 .1 .2 ; M_bg = .1 .3 .1 .6 ; est = (M_fg + 1 - M_bg) / 2 = .8 .65 .5 .3
    # loss = (.1^2 + .45^2 + .3^2 + .2^2) / 4 = .3425 / 4   (with class 1 in M_bg it would differ)
    labels = torch.tensor([[1.0, 0.0]])
    assert eps_saliency_loss(cam_logits(), saliency(), labels, tau=0.4).item() == pytest.approx(0.3425 / 4, abs=1e-6)
    # lam = 1: est = M_fg = .7 .6 .1 .2 ; loss = (.2^2 + .4^2 + .7^2 + .1^2) / 4 = .7 / 4
    assert eps_saliency_loss(cam_logits(), saliency(), labels, tau=0.4, lam=1.0).item() == pytest.approx(
        0.7 / 4, abs=1e-6
    )


def test_eps_saliency_is_resized_with_nearest():
    # nearest from 4x4 to 2x2 reads the pixels (0, 0), (0, 2), (2, 0), (2, 2); the rest is noise
    big = torch.rand(1, 1, 4, 4)
    big[0, 0, ::2, ::2] = SALIENCY
    loss = eps_saliency_loss(cam_logits(), big, torch.tensor([[1.0, 1.0]]), tau=0.5)
    assert loss.item() == pytest.approx(0.51 / 4, abs=1e-6)


def test_eps_matches_reference_formulation_on_random_inputs():
    gen = torch.Generator().manual_seed(0)
    for c, h, w, tau in [(20, 28, 28, 0.4), (3, 5, 9, 0.5), (80, 7, 6, 0.2)]:
        cam = (torch.randn(3, c + 1, h, w, generator=gen) * 3).requires_grad_()
        sal = torch.rand(3, 1, 4 * h + 3, 3 * w, generator=gen)
        labels = (torch.rand(3, c, generator=gen) > 0.6).float()
        ours = eps_saliency_loss(cam, sal, labels, tau=tau, lam=0.3)
        ref = reference_eps_loss(cam, sal, labels, tau, 0.3)
        torch.testing.assert_close(ours, ref, atol=1e-7, rtol=0)
        (g_ours,) = torch.autograd.grad(ours, cam)
        (g_ref,) = torch.autograd.grad(ref, cam)
        torch.testing.assert_close(g_ours, g_ref, atol=1e-8, rtol=0)


# ----------------------------------------------------------------------------------------------- IRD
def refined_maps(batch: int = 1) -> torch.Tensor:
    # object-channel sum .8 .3 / .6 .7 -> B(M_r) = 1 0 / 1 1
    maps = torch.tensor([[[0.4, 0.1], [0.3, 0.3]], [[0.4, 0.2], [0.3, 0.4]]])
    maps = torch.cat([maps, 1 - maps.sum(0, keepdim=True)])
    return maps.unsqueeze(0).repeat(batch, 1, 1, 1)


@pytest.mark.parametrize("reading", ["softmax", "normalized"])
def test_ird_hand_value_and_inconsistent_region(reading):
    # M_fg = M_0 + M_1 = .9 .7 .9 .4
    # softmax:    M_r = .4+.4 .1+.2 / .3+.3 .3+.4 = .8 .3 / .6 .7           -> B(M_r) = 1 0 1 1
    # normalized: M_r_0 / .4 = 1 .25 / .75 .75, M_r_1 / .4 = 1 .5 / .75 1,
    #             max = 1 .5 / .75 1 (.5 is not above .5)                   -> B(M_r) = 1 0 1 1
    # B(M_s) = 1 0 1 0 -> N = 0 0 0 1; loss = ((.9-.9)^2 + (.2-.7)^2 + (.8-.9)^2) / 3 = .26 / 3
    loss, inconsistent = ird_saliency_loss(
        cam_logits(),
        saliency(),
        torch.tensor([[1.0, 1.0]]),
        refined_maps(),
        return_inconsistent=True,
        threshold_maps=reading,
    )
    assert loss.item() == pytest.approx(0.26 / 3, abs=1e-6)
    assert inconsistent.dtype == torch.bool and inconsistent.shape == (1, 1, 2, 2)
    assert inconsistent.flatten().tolist() == [False, False, False, True]


def test_ird_per_image_normalization_and_batch_mean():
    # image 0: labels (1, 1) -> .26 / 3 (above, both readings)
    # image 1: labels (0, 1): M_fg = .2 .1 .8 .2, saliency .9 .2 .8 .1 (B = 1 0 1 0)
    #   softmax:    M_r = .4 .2 .3 .4 -> B = 0 0 0 0, N = 1 0 1 0; loss = ((.2-.1)^2 + (.1-.2)^2) / 2 = .01
    #   normalized: M_r_1 / .4 = 1 .5 .75 1 -> B = 1 0 1 1, N = 0 0 0 1;
    #               loss = ((.9-.2)^2 + (.2-.1)^2 + (.8-.8)^2) / 3 = .5 / 3
    # image 2: saliency 1 everywhere, labels (0, 0): M_r = 0 under both -> N = 1 everywhere -> 0
    sal = saliency(3)
    sal[2] = 1.0
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    softmax = ird_saliency_loss(cam_logits(3), sal, labels, refined_maps(3), threshold_maps="softmax")
    assert softmax.item() == pytest.approx((0.26 / 3 + 0.01 + 0.0) / 3, abs=1e-6)
    normalized = ird_saliency_loss(cam_logits(3), sal, labels, refined_maps(3), threshold_maps="normalized")
    assert normalized.item() == pytest.approx((0.26 / 3 + 0.5 / 3 + 0.0) / 3, abs=1e-6)
    torch.testing.assert_close(ird_saliency_loss(cam_logits(3), sal, labels, refined_maps(3)), normalized)  # default


def test_ird_threshold_map_of_each_reading_by_hand():
    # one image, 3 classes, 1x3 pixels; class 2 unlabelled (its large map must not count)
    refined = torch.tensor([[[[0.2, 0.1, 0.0]], [[0.05, 0.1, 0.2]], [[0.7, 0.7, 0.7]], [[0.05, 0.1, 0.1]]]])
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    # softmax: .2+.05 .1+.1 .0+.2 = .25 .2 .2
    softmax = ird_threshold_map(refined, labels, "softmax")
    assert softmax.shape == (1, 1, 1, 3)
    torch.testing.assert_close(softmax.flatten(), torch.tensor([0.25, 0.2, 0.2]))
    # normalized: class 0 / .2 = 1 .5 0, class 1 / .2 = .25 .5 1 -> max = 1 .5 1
    normalized = ird_threshold_map(refined, labels, "normalized")
    torch.testing.assert_close(normalized.flatten(), torch.tensor([1.0, 0.5, 1.0]))
    # a labelled class whose refined map is 0 everywhere stays 0 (no division by zero); no label: 0
    zero = ird_threshold_map(torch.zeros(1, 4, 1, 3), labels, "normalized")
    assert torch.equal(zero, torch.zeros(1, 1, 1, 3))
    assert torch.equal(ird_threshold_map(refined, torch.zeros(1, 3), "normalized"), torch.zeros(1, 1, 1, 3))
    # the object channels alone give the same map
    torch.testing.assert_close(ird_threshold_map(refined[:, :3], labels, "normalized"), normalized)
    with pytest.raises(ValueError, match="threshold_maps must be one of normalized, softmax"):
        ird_threshold_map(refined, labels, "max")


def floored_example() -> tuple[torch.Tensor, torch.Tensor]:
    """One image, 3 classes + background, 2x3 (non-square) refined maps, class 2 unlabelled (float64: the ties are
    exact, 1.0 x 0.6 is the double 0.6)."""
    refined = torch.tensor(
        [
            [[1.0, 0.6, 0.61], [0.59, 0.0, 0.3]],  # class 0, peak 1: cutoff max(0.6 x 1, 0.2) = 0.6
            [[0.0, 0.2, 0.0], [0.21, 0.25, 0.19]],  # class 1, peak .25: cutoff max(0.15, 0.2) = 0.2 (the floor)
            [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9]],  # class 2, unlabelled: would pass everywhere
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # background
        ],
        dtype=torch.float64,
    )[None]
    return refined, torch.tensor([[1.0, 1.0, 0.0]])


def test_ird_floored_reading_by_hand():
    """1-stage-wseg's reading: above 0.6 x the class's maximum AND above 0.2, strictly (``mask > mask_max``)."""
    refined, labels = floored_example()
    floored = ird_threshold_map(refined, labels, "floored")
    assert floored.shape == (1, 1, 2, 3)
    # class 0 passes at 1.0 and .61, not at .6 (exactly the fraction) nor .59 / .3 (below .6 though above .2);
    # class 1 passes at .21 and .25, not at .2 (exactly the floor, above .6 x .25 = .15) nor .19
    assert floored[0, 0].tolist() == [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    # the fraction and the floor are arguments: fraction .5 lets class 0's .6 and .59 pass; floor .1 lets class 1's
    # .19 pass (above max(.5 x .25, .1) = .125) and its .2; class 0's .3 stays below .5
    assert ird_threshold_map(refined, labels, "floored", 0.5, 0.1)[0, 0].tolist() == [[1, 1, 1], [1, 1, 1]]
    assert ird_threshold_map(refined, labels, "floored", 0.5, 0.2)[0, 0].tolist() == [[1, 1, 1], [1, 1, 0]]
    # no label: nothing passes; float32 maps give float32
    assert not ird_threshold_map(refined, torch.zeros(1, 3), "floored").any()
    assert ird_threshold_map(refined.float(), labels, "floored").dtype == torch.float32
    # the loss's N uses it: B(M_r) XOR B(M_s), with the saliency salient on the top row only
    sal = torch.tensor([[[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]], dtype=torch.float64)
    _, region = ird_saliency_loss(
        torch.zeros(1, 4, 2, 3), sal, labels, refined, return_inconsistent=True, threshold_maps="floored"
    )
    assert region[0, 0].tolist() == [[False, True, False], [True, True, False]]
    _, region = ird_saliency_loss(
        torch.zeros(1, 4, 2, 3), sal, labels, refined, True, threshold_maps="floored", floor_fraction=0.5, floor=0.1
    )
    assert region[0, 0].tolist() == [[False, False, False], [True, True, True]]  # every pixel passes B(M_r)


def test_ird_readings_differ_on_a_new_heads_maps():
    """The step-0 argument of docs/architecture.md: softmax maps of a new head over C+1 channels are below
    0.5 everywhere, so the softmax reading drops every salient pixel; the normalized one keeps every pixel
    where a labelled class's map is above half its maximum (here, near-uniform maps: almost all)."""
    gen = torch.Generator().manual_seed(0)
    cam = 0.1 * torch.randn(2, 6, 8, 8, generator=gen)  # near-uniform softmax over 6 channels, about 1/6
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    sal = torch.ones(2, 1, 8, 8)
    refined = cam.softmax(1)
    _, softmax = ird_saliency_loss(cam, sal, labels, refined, return_inconsistent=True, threshold_maps="softmax")
    _, normalized = ird_saliency_loss(cam, sal, labels, refined, return_inconsistent=True)
    assert softmax.all()  # every salient pixel dropped
    assert (~normalized).float().mean().item() > 0.5  # most salient pixels stay in the loss
    # floored: maps about 1/6 are below the floor 0.2 nearly everywhere (the few above 0.2 pass): 125 of 128 dropped
    _, floored = ird_saliency_loss(cam, sal, labels, refined, return_inconsistent=True, threshold_maps="floored")
    assert floored.float().mean().item() == pytest.approx(125 / 128)


def test_ird_all_inconsistent_gives_zero_and_finite_gradient():
    cam = cam_logits().requires_grad_()
    sal = torch.ones(1, 1, 2, 2)
    loss, inconsistent = ird_saliency_loss(
        cam, sal, torch.tensor([[0.0, 0.0]]), refined_maps(), return_inconsistent=True
    )
    assert inconsistent.all() and loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(cam.grad).all() and (cam.grad == 0).all()


def test_ird_threshold_is_strictly_above_half():
    # saliency exactly 0.5 and refined foreground exactly 0.5 are both "background": consistent
    sal = torch.full((1, 1, 2, 2), 0.5)
    refined = torch.zeros(1, 3, 2, 2)
    refined[:, 0] = 0.5
    _, inconsistent = ird_saliency_loss(
        cam_logits(), sal, torch.tensor([[1.0, 0.0]]), refined, return_inconsistent=True, threshold_maps="softmax"
    )
    assert not inconsistent.any()
    # normalized: .2 .1 / .1 .05 over its max .2 = 1 .5 / .5 .25 -> B = 1 0 0 0 (.5 is not above); B(M_s) = 0
    refined[0, 0] = torch.tensor([[0.2, 0.1], [0.1, 0.05]])
    _, inconsistent = ird_saliency_loss(
        cam_logits(), sal, torch.tensor([[1.0, 0.0]]), refined, return_inconsistent=True, threshold_maps="normalized"
    )
    assert inconsistent.flatten().tolist() == [True, False, False, False]


def test_ird_gradient_reaches_cam_logits_only():
    cam = (cam_logits() * 1.0).requires_grad_()
    sal = saliency().requires_grad_()
    refined = refined_maps().requires_grad_()
    loss = ird_saliency_loss(cam, sal, torch.tensor([[1.0, 1.0]]), refined)
    loss.backward()
    assert cam.grad is not None and cam.grad.abs().sum() > 0
    assert sal.grad is None and refined.grad is None


def test_ird_accepts_object_channels_only_and_rejects_bad_shapes():
    labels = torch.tensor([[1.0, 1.0]])
    full = ird_saliency_loss(cam_logits(), saliency(), labels, refined_maps())
    objects_only = ird_saliency_loss(cam_logits(), saliency(), labels, refined_maps()[:, :2])
    torch.testing.assert_close(full, objects_only)
    with pytest.raises(ValueError):
        ird_saliency_loss(cam_logits(), saliency(), labels, refined_maps()[..., :1])
    with pytest.raises(ValueError):
        eps_saliency_loss(cam_logits(), saliency(), torch.ones(1, 3))


# --------------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    gen = torch.Generator().manual_seed(1)
    cam32 = torch.randn(2, 6, 8, 8, generator=gen)
    sal32 = torch.rand(2, 1, 16, 16, generator=gen)
    labels = (torch.rand(2, 5, generator=gen) > 0.5).float()
    refined32 = torch.randn(2, 6, 8, 8, generator=gen).softmax(1)
    cam = cam32.to(dtype).requires_grad_()
    for fn, args in [
        (eps_saliency_loss, (cam, sal32.to(dtype), labels.to(dtype))),
        (ird_saliency_loss, (cam, sal32.to(dtype), labels.to(dtype), refined32.to(dtype))),
    ]:
        loss = fn(*args)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, cam)
        assert grad.dtype == dtype and torch.isfinite(grad.float()).all()
    assert classification_loss(cam32[:, :5, 0, 0].to(dtype), labels.to(dtype)).dtype == torch.float32


# ----------------------------------------------------------------- segmentation loss (stage 3)
def _segmentation_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2 images x 3 pixels, 2 classes; logits chosen so that every cross-entropy is a simple log.

    image 0 (ground truth):  p0 logits (0, 0) label 0 -> ln 2;  p1 ignored;  p2 (ln 3, 0) label 1 -> ln 4
    image 1 (pseudo-mask):   p0 (ln 3, 0) label 0 -> ln 4/3;   p1 (0, 0) label 1 -> ln 2;  p2 ignored
    """
    ln3 = math.log(3)
    logits = torch.tensor([[[0.0, 0.0, ln3], [0.0, 5.0, 0.0]], [[ln3, 0.0, 7.0], [0.0, 0.0, 1.0]]]).reshape(2, 2, 1, 3)
    mask = torch.tensor([[0, 255, 1], [0, 1, 255]]).reshape(2, 1, 3)
    return logits, mask, torch.tensor([1.0, 0.0])


def test_segmentation_loss_by_hand() -> None:
    logits, mask, is_labeled = _segmentation_case()
    gt = math.log(2) + math.log(4)
    pseudo = math.log(4 / 3) + math.log(2)
    # pseudo_weight 1: the mean over the 4 valid pixels
    assert float(segmentation_loss(logits, mask, is_labeled, 1.0)) == pytest.approx((gt + pseudo) / 4, rel=1e-6)
    # pseudo_weight 0.3: sum w CE / sum w = (gt + 0.3 pseudo) / (2 + 0.3 * 2)
    expected = (gt + 0.3 * pseudo) / (2 + 0.6)
    assert float(segmentation_loss(logits, mask, is_labeled, 0.3)) == pytest.approx(expected, rel=1e-6)
    # an all-pseudo batch: the weight cancels, plain mean over its valid pixels
    all_pseudo = segmentation_loss(logits, mask, torch.zeros(2), 0.3)
    assert float(all_pseudo) == pytest.approx((gt + pseudo) / 4, rel=1e-6)


def test_segmentation_loss_with_weight_1_is_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 9, 7, generator=generator, requires_grad=True)
    mask = torch.randint(0, 6, (3, 9, 7), generator=generator)
    mask[0, :4] = 255
    mask[2, :, :2] = 255
    loss = segmentation_loss(logits, mask, torch.tensor([1.0, 0.0, 1.0]), 1.0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, mask, ignore_index=255))
    loss.backward()
    assert logits.grad is not None and logits.grad[0, :, :4].abs().max() == 0  # ignored pixels get no gradient


def test_segmentation_loss_without_valid_pixels_is_zero() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 4, 4), 255), torch.tensor([1.0, 0.0]), 0.5)
    assert float(loss) == 0.0 and loss.requires_grad


# ------------------------------------------- variation pass (issue 34 item 6): telemetry map, shapes refused
def test_telemetry_pools_the_threshold_map_over_the_salient_pixels_and_the_others() -> None:
    """``threshold_map_salient`` / ``_background``: the map's mean over the batch's salient pixels (saliency > 0.5)
    and over the rest, pooled. Image 0 (1x3): saliency .9 .5 .7, map .2 .9 .6; image 1: all salient, map .3.
    Salient: (.2 + .6 + 3 x .3) / 5 = .34 (the mean of the per-image means would be .35); background: .9."""
    from epspp.losses import ird_telemetry

    saliency = torch.tensor([[[[0.9, 0.5, 0.7]]], [[[1.0, 1.0, 1.0]]]])
    threshold_map = torch.tensor([[[[0.2, 0.9, 0.6]]], [[[0.3, 0.3, 0.3]]]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    inconsistent = torch.zeros(2, 1, 1, 3, dtype=torch.bool)
    values = ird_telemetry(torch.zeros(2, 3, 1, 3), saliency, labels, inconsistent, threshold_map)
    assert values["threshold_map_salient"].item() == pytest.approx(0.34)
    assert values["threshold_map_background"].item() == pytest.approx(0.9)
    assert "threshold_map_salient" not in ird_telemetry(torch.zeros(2, 3, 1, 3), saliency, labels, inconsistent)
    with pytest.raises(ValueError, match=r"threshold_map must be \(B, 1, h, w\) = \(2, 1, 1, 3\), got \(2, 1, 1, 2\)"):
        ird_telemetry(torch.zeros(2, 3, 1, 3), saliency, labels, inconsistent, threshold_map[..., :2])


@pytest.mark.parametrize(
    ("cam", "sal", "labels", "message"),
    [
        ((1, 3, 2, 2), (1, 2, 2, 2), (1, 2), "expected cam_logits"),  # two saliency channels
        ((1, 3, 2), (1, 1, 2, 2), (1, 2), "expected cam_logits"),  # 3-d logits
        ((1, 3, 2, 2), (2, 1, 2, 2), (1, 2), "labels must be"),  # a saliency map per image of another batch
        ((2, 3, 2, 2), (2, 1, 2, 2), (2, 3), "labels must be"),  # C + 1 labels
    ],
)
def test_inputs_of_other_shapes_are_refused(cam: tuple, sal: tuple, labels: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        eps_saliency_loss(torch.zeros(cam), torch.zeros(sal), torch.zeros(labels))
