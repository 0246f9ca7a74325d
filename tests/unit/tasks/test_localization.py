"""LocalizationModule (stage 1): the map kind of each method, predict_step's full-resolution masks, the saliency
warm-ups and a checkpoint of another class count."""

from __future__ import annotations

import inspect

import pytest
import torch

from epspp.errors import ConfigError
from epspp.runs.provenance import provenance
from epspp.tasks import LocalizationModule
from epspp.tasks.checkpoint import CheckpointMismatchError


# ------------------------------------------------------------------ predict_step
def _module(**kwargs) -> LocalizationModule:
    torch.manual_seed(0)
    args = dict(
        num_classes=3,
        backbone="resnet10t",
        backbone_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8},
        output_stride=8,
        pamr_iter=2,
        pamr_dilations=(1, 2),
        scales=(0.5, 1.0),
    )
    return LocalizationModule(**(args | kwargs)).eval()


def _batch(label: list[float], height: int = 37, width: int = 53) -> dict:
    return {
        "id": ["x"],
        "image": torch.randn(1, 3, height, width),
        "label": torch.tensor([label]),
        "mask": torch.zeros(1, height, width, dtype=torch.long),
        "has_mask": torch.tensor([True]),
    }


def test_class_logits_pool_the_object_maps_and_leave_the_background_last_out() -> None:
    """The head's C+1 maps put the background LAST (EPS's layout, docs/architecture.md "Channels"): the image-level
    logits are the spatial means of the first C maps. A 2x3 map per channel, non-square, by hand."""
    cam = torch.zeros(2, 4, 2, 3)
    cam[:, 0] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # mean 3.5
    cam[:, 1] = -1.0
    cam[:, 2, 0] = 6.0  # mean 3
    cam[:, 3] = 100.0  # the background
    cam[1] *= 2
    expected = torch.tensor([[3.5, -1.0, 3.0], [7.0, -2.0, 6.0]])
    torch.testing.assert_close(_module().class_logits(cam), expected)


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
    batch = {
        "image": torch.randn(2, 3, 32, 32, generator=gen),
        "saliency": torch.rand(2, 1, 32, 32, generator=gen),
        "label": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    }
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


@pytest.mark.parametrize("dataset", ["voc", "coco"])
def test_predict_step_matches_the_maps_of_every_class_and_ignores_cpu_autocast(dataset: str) -> None:
    """Only the labelled classes are upsampled: the scores equal those of the maps of all classes, masked by
    ``normalize_maps``; under the paper config's precision on a CPU trainer (Lightning turns ``16-mixed`` into
    ``bf16-mixed`` there) the step still runs in float32."""
    import warnings

    import pytorch_lightning as pl
    import yaml

    from epspp.config_files import PACKAGED
    from epspp.ops import multiscale_maps, normalize_maps, with_background

    precision = yaml.safe_load((PACKAGED / dataset / "pseudo_masks.yaml").read_text())["trainer"]["precision"]
    assert precision in ("16-mixed", "bf16-mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's warning that 16-mixed becomes bf16-mixed on the CPU
        trainer = pl.Trainer(accelerator="cpu", precision=precision, logger=False)

    module = _module(saliency_loss="eps", bg_threshold=0.2)
    batch = _batch([1.0, 0.0, 1.0])
    with torch.no_grad():
        every = multiscale_maps(module, batch["image"], module.hparams.scales, True, "softmax")
        expected = with_background(normalize_maps(every, batch["label"]), 0.2)
        plain = module.predict_step(batch, 0)["scores"]
        with trainer.precision_plugin.predict_step_context():
            assert torch.is_autocast_enabled("cpu")
            mixed = module.predict_step(batch, 0)["scores"]
        blank = module.predict_step(_batch([0.0, 0.0, 0.0]), 0)["mask"]
    torch.testing.assert_close(plain, expected)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain)
    assert not blank.any()  # no labels: background everywhere


def test_every_inference_option_is_a_hyper_parameter_recorded_in_the_provenance() -> None:
    """``inference_options`` maps the module to its mask folders' ``provenance.json``: each must name a parameter of
    the module (a misspelt key would record None for every run, and a change of that option would go unnoticed on
    resume)."""
    parameters = set(inspect.signature(LocalizationModule.__init__).parameters)
    assert set(LocalizationModule.inference_options) <= parameters
    assert set(LocalizationModule.speed_options) <= parameters
    recorded = provenance(_module(), {}, None, {})["inference"]
    assert recorded["pamr_iter"] == 2 and recorded["pamr_dilations"] == [1, 2] and recorded["scales"] == [0.5, 1.0]
    assert None not in recorded.values()


@pytest.mark.parametrize("scored_pixels", [0, 1])
def test_val_miou_is_logged_only_with_a_ground_truth_pixel(scored_pixels: int) -> None:
    """Without ground truth there is no mIoU (not 0): nothing logged, ``last_iou`` None; one pixel of ground truth is
    enough to score (boundary sweep)."""
    from types import SimpleNamespace

    module = _module()
    logged: dict = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)  # type: ignore[method-assign]
    module.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]
    module._trainer = SimpleNamespace(is_global_zero=False, sanity_checking=False)  # type: ignore[assignment]
    logits, labels = torch.tensor([[2.0, -2.0, 0.5], [-1.0, 1.0, -3.0]]), torch.tensor([[1, 0, 1], [0, 1, 0]])
    module.val_ap.update(logits, labels)
    module.val_f1.update(logits, labels)
    target = torch.full((1, 3, 5), 255)  # every pixel ignored ...
    target[0, 0, :scored_pixels] = 1  # ... but this many of class 1
    module.val_cam.update(torch.ones(1, 3, 5, dtype=torch.long), target)
    module.on_validation_epoch_end()
    assert ("val/mIoU" in logged) is bool(scored_pixels) and (module.last_iou is not None) is bool(scored_pixels)
    if scored_pixels:
        assert float(logged["val/mIoU"]) == pytest.approx(1.0)  # the one pixel right; absent classes not counted


# --------------------------------------------- options refused, the inference resize, explain's pictures
def test_class_names_of_another_count_and_saliency_the_data_lacks_are_refused() -> None:
    with pytest.raises(ValueError) as error:
        _module(class_names=["background", "cat"])
    assert str(error.value) == "class_names has 2 entries, expected 4"
    with pytest.raises(ValueError, match="^class_names has 5 entries, expected 4$"):
        _module(class_names=["background", "a", "b", "c", "d"])
    assert _module().class_names == ["background", "class_1", "class_2", "class_3"]
    module = _module(saliency_loss="eps")
    with pytest.raises(ConfigError) as refused:
        module.saliency_term({"image": torch.zeros(1, 3, 8, 8)}, torch.zeros(1, 4, 2, 2))
    assert str(refused.value) == (
        "saliency_loss eps needs saliency maps, but the data serves none (--data.with_saliency false): set "
        "saliency_loss none or --data.with_saliency true"
    )


def _normalized_picture(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, H, W) uint8 picture of a gradient and the image the data pipeline makes of it (ImageNet mean/std)."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    picture = torch.stack([(ys * 23 + xs * 11) % 256, (xs * 37) % 256, (ys * 53) % 256]).to(torch.uint8)[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return picture, (picture.float() / 255 - mean) / std


def test_the_inference_resize_is_the_one_the_option_names() -> None:
    import numpy as np
    from PIL import Image

    picture, image = _normalized_picture(9, 14)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pil = Image.fromarray(picture[0].permute(1, 2, 0).numpy()).resize((7, 5), Image.BICUBIC)  # (W, H)
    pil_picture = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)[None].float()

    def back(resized: torch.Tensor) -> torch.Tensor:  # the picture behind a normalized image
        return ((resized * std + mean) * 255).round()

    by_pil = _module(inference_resize="pil_bicubic").resize(image, (5, 7))
    assert by_pil.shape == (1, 3, 5, 7) and torch.equal(back(by_pil), pil_picture)
    by_torch = _module(inference_resize="bicubic").resize(image, (5, 7))
    assert (back(by_torch) - pil_picture).abs().max() <= 2  # PIL's kernel in float: within 2 grey levels
    bilinear = _module().resize(image, (5, 7))
    assert torch.allclose(bilinear, torch.nn.functional.interpolate(image, (5, 7), mode="bilinear"))


def test_bicubic_inference_needs_the_datas_mean_and_std() -> None:
    from types import SimpleNamespace

    def start(module: LocalizationModule, data: dict | None) -> None:
        module.trainer = SimpleNamespace(datamodule=None if data is None else SimpleNamespace(hparams=data))
        LocalizationModule.on_predict_start(module)

    module = _module(inference_resize="bicubic")
    start(module, {"mean": [0.485, 0.456, 0.406], "std": None})  # the defaults (ImageNet's), as a list
    start(module, None)  # no data module: nothing to compare
    with pytest.raises(ConfigError) as error:
        start(module, {"mean": (0.5, 0.5, 0.5), "std": (0.229, 0.224, 0.225)})
    assert str(error.value) == (
        "data.mean [0.5, 0.5, 0.5] differs from model image_mean [0.485, 0.456, 0.406]: set "
        "--model.init_args.image_mean to the data's values for bicubic inference"
    )
    with pytest.raises(ConfigError, match=r"^data\.std \[0\.2, 0\.2, 0\.2\] differs from model image_std"):
        start(module, {"std": (0.2, 0.2, 0.2)})
    start(_module(), {"mean": (0.5, 0.5, 0.5)})  # bilinear resizes the normalized image: any mean will do


def test_explain_draws_the_labelled_classes_maps_at_the_input_size() -> None:
    """Two images of 21x30 (non-square): the localization picture is the max of the labelled classes' maps, each
    normalized to a maximum of 1; the pseudo-mask is background exactly where that max is at most bg_threshold
    (0.9 here; a tie goes to the background), else one of the image's labelled classes."""
    torch.manual_seed(1)
    module = _module(saliency_loss="ird", bg_threshold=0.9)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        out = module.explain(torch.randn(2, 3, 21, 30), torch.rand(2, 1, 21, 30), labels)
    assert {key: tuple(value.shape) for key, value in out.items()} == {
        "localization": (2, 21, 30),
        "inconsistent": (2, 21, 30),
        "pseudo_mask": (2, 21, 30),
    }
    assert out["inconsistent"].dtype == torch.bool
    assert torch.allclose(out["localization"].amax(dim=(1, 2)), torch.ones(2), atol=1e-4)  # max / (max + eps)
    assert out["localization"].min() >= 0
    assert torch.equal(out["pseudo_mask"] == 0, out["localization"] <= 0.9)
    assert (out["pseudo_mask"] == 0).any()
    assert set(out["pseudo_mask"][0].unique().tolist()) <= {0, 1, 3}
    assert set(out["pseudo_mask"][1].unique().tolist()) <= {0, 2}
    assert (out["pseudo_mask"][0] > 0).any() and (out["pseudo_mask"][1] == 2).any()


# ------------------------------------------- variation pass (issue 34 item 6): options away from their defaults
@pytest.mark.parametrize("reading", ["softmax", "floored"])
def test_the_ird_reading_and_its_floor_reach_the_region_the_telemetry_map_and_explain(reading: str) -> None:
    """``ird_threshold_maps`` away from its default, and the floored reading's numbers away from theirs (0.7 x the
    class's maximum and 0.1, not 0.6 and 0.2): B(M_r) of ``saliency_term``'s region, its telemetry map and
    ``explain``'s picture are those of the reading written out here (``ird_refine: none``: M_r = softmax(cam)), on
    5x7 maps of two images."""
    module = _module(ird_refine="none", ird_threshold_maps=reading, ird_floor_fraction=0.7, ird_floor=0.1)
    gen = torch.Generator().manual_seed(4)
    cam = 3 * torch.randn(2, 4, 5, 7, generator=gen)  # spread softmax maps
    images, saliency = torch.randn(2, 3, 10, 14, generator=gen), torch.rand(2, 1, 10, 14, generator=gen)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    maps = cam.softmax(dim=1)[:, :3] * labels[:, :, None, None]  # the labelled classes' maps, the others 0
    if reading == "softmax":
        reference = maps.sum(1, keepdim=True)
    else:  # strictly above both 0.7 x the class's maximum and 0.1
        cutoff = (0.7 * maps.amax(dim=(2, 3), keepdim=True)).clamp_min(0.1)
        reference = (maps > cutoff).any(1, keepdim=True).float()
    salient = torch.nn.functional.interpolate(saliency, (5, 7), mode="nearest") > 0.5
    expected = (reference > 0.5) ^ salient
    assert expected.any() and not expected.all()
    _, ird = module.saliency_term({"image": images, "saliency": saliency, "label": labels}, cam)
    torch.testing.assert_close(ird["threshold_map"], reference)
    assert torch.equal(ird["inconsistent"], expected)
    module.forward = lambda _: cam  # type: ignore[method-assign]
    picture = module.explain(images, saliency, labels)["inconsistent"]
    assert torch.equal(picture, torch.nn.functional.interpolate(expected.float(), (10, 14), mode="nearest")[:, 0] > 0)


def _fake_trainer(**attributes: object) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(global_step=0, **attributes)


def test_training_step_adds_the_weighted_saliency_loss_and_logs_each_term(monkeypatch) -> None:
    """``saliency_weight`` 0.25 and EPS's ``tau``/``lam`` (0.4, 0.3) away from their defaults: loss = L_cls + 0.25 x
    L_sal, L_cls the multi-label soft margin of the object maps' means, L_sal EPS's loss of those two numbers;
    each term and the optimizer's rate logged under its key."""
    from epspp.losses import eps_saliency_loss

    module = _module(saliency_loss="eps", saliency_weight=0.25, tau=0.4, lam=0.3)
    module.trainer = _fake_trainer(optimizers=[SimpleOptimizer(0.02)])  # type: ignore[assignment]
    logged: dict = {}
    monkeypatch.setattr(module, "log_dict", lambda values, **_: logged.update(values))
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    gen = torch.Generator().manual_seed(2)
    batch = {
        "image": torch.randn(2, 3, 40, 56, generator=gen),
        "saliency": torch.rand(2, 1, 40, 56, generator=gen),
        "label": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    }
    loss = module.training_step(batch, 0)
    with torch.no_grad():
        cam = module(batch["image"])
    loss_cls = torch.nn.functional.multilabel_soft_margin_loss(cam[:, :3].mean(dim=(2, 3)), batch["label"])
    loss_sal = eps_saliency_loss(cam, batch["saliency"], batch["label"], tau=0.4, lam=0.3)
    assert float(loss_sal) > 1e-3 and not torch.allclose(
        loss_sal, eps_saliency_loss(cam, batch["saliency"], batch["label"])
    )
    torch.testing.assert_close(loss.detach(), loss_cls + 0.25 * loss_sal)
    torch.testing.assert_close(logged["train/loss"].detach(), loss.detach())
    torch.testing.assert_close(logged["train/loss_cls"].detach(), loss_cls)
    torch.testing.assert_close(logged["train/loss_sal"].detach(), loss_sal)
    assert logged["train/lr"] == 0.02


class SimpleOptimizer:
    """What ``training_step`` reads of an optimizer: its first group's rate."""

    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr}]


@pytest.mark.parametrize("saliency_loss, map_kind", [("ird", "relu"), ("none", "softmax")])
def test_a_chosen_map_kind_is_kept_and_auto_follows_only_a_recorded_loss(saliency_loss: str, map_kind: str) -> None:
    """``map_kind`` set away from ``auto`` wins over the method, also after loading a checkpoint of that method;
    under ``auto`` a checkpoint that records no saliency loss leaves the method's kind."""
    chosen = _module(saliency_loss=saliency_loss, map_kind=map_kind)
    assert chosen.map_kind == map_kind
    chosen.on_load_checkpoint({"hyper_parameters": {"num_classes": 3, "saliency_loss": saliency_loss}})
    assert chosen.map_kind == map_kind
    auto = _module(saliency_loss=saliency_loss)
    auto.on_load_checkpoint({"hyper_parameters": {"num_classes": 3}})
    assert auto.map_kind == ("relu" if saliency_loss == "none" else "softmax")


def test_predict_step_runs_the_configured_flip_and_resize() -> None:
    """``flip: false`` and ``inference_resize: bicubic`` (both away from their defaults) reach ``predict_step``'s
    multi-scale maps: its scores are those of ``multiscale_maps`` called with them, not with the defaults."""
    from epspp.ops import bicubic_resize, bilinear_resize, multiscale_maps, normalize_maps, with_background

    module = _module(saliency_loss="eps", flip=False, inference_resize="bicubic", bg_threshold=0.3)
    batch = _batch([1.0, 0.0, 1.0], 21, 30)

    def bicubic(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return bicubic_resize(image, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

    def expected(flip: bool, resize) -> torch.Tensor:  # noqa: ANN001
        maps = multiscale_maps(module, batch["image"], (0.5, 1.0), flip, "softmax", resize)
        return with_background(normalize_maps(maps, batch["label"]), 0.3)

    with torch.no_grad():
        scores = module.predict_step(batch, 0)["scores"]
        torch.testing.assert_close(scores, expected(False, bicubic))
        assert not torch.allclose(scores, expected(True, bicubic), atol=1e-3)
        assert not torch.allclose(scores, expected(False, bilinear_resize), atol=1e-3)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_optimizer_options_reach_the_groups_and_the_schedule(optimizer: str) -> None:
    """Every optimizer option away from its default: backbone weights at lr 0.02 with decay 1e-3, its (BatchNorm)
    biases at 3 x 0.02 without decay, the bias-free head at 5 x 0.02; SGD's momentum 0.7; poly power 2 over 10 steps."""
    module = _module(
        optimizer=optimizer,
        lr=0.02,
        head_lr_mult=5.0,
        weight_decay=1e-3,
        momentum=0.7,
        bias_lr_mult=3.0,
        bias_decay=False,
        poly_power=2.0,
    )
    module.trainer = _fake_trainer(estimated_stepping_batches=10)  # type: ignore[assignment]
    config = module.configure_optimizers()
    optim, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert type(optim) is {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[optimizer]
    head = {id(p) for p in module.net.head.parameters()}
    groups = [(g["lr"], g["weight_decay"], {id(p) in head for p in g["params"]}) for g in optim.param_groups]
    assert groups == [(0.02, 1e-3, {False}), (pytest.approx(0.06), 0.0, {False}), (pytest.approx(0.1), 1e-3, {True})]
    assert optimizer != "sgd" or all(g["momentum"] == 0.7 for g in optim.param_groups)
    for step in range(1, 4):
        optim.step()
        schedule.step()
        assert optim.param_groups[0]["lr"] == pytest.approx(0.02 * (1 - step / 10) ** 2)


def test_the_backbone_options_reach_the_network() -> None:
    """``output_stride`` 8 and 16 (a 40x56 image: 5x7 and 3x4 maps); ``freeze_bn`` alone (no BatchNorm2d left, the
    stem's convolutions still train) and ``freeze_stem`` alone (the stem without gradient, BatchNorm trainable)."""
    image = torch.zeros(1, 3, 40, 56)
    with torch.no_grad():
        assert _module(output_stride=8)(image).shape[-2:] == (5, 7)
        assert _module(output_stride=16)(image).shape[-2:] == (3, 4)

    def norms(module: LocalizationModule) -> list[torch.nn.Module]:
        return [m for m in module.net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def stem_trains(module: LocalizationModule) -> bool:
        return all(p.requires_grad for p in module.net.backbone.body.conv1.parameters())

    frozen_bn, frozen_stem = _module(freeze_bn=True), _module(freeze_stem=True)
    assert not norms(frozen_bn) and stem_trains(frozen_bn)
    assert norms(frozen_stem) and all(p.requires_grad for m in norms(frozen_stem)[-2:] for p in m.parameters())
    assert not stem_trains(frozen_stem)


def test_watch_ird_passes_the_batchs_injected_errors_to_the_telemetry() -> None:
    """A batch with ``saliency_error`` (``data.saliency_errors``): the logged telemetry adds N against the injected
    errors, the values of ``ird_telemetry`` given those flags."""
    import math
    from types import SimpleNamespace

    from epspp.losses import ird_telemetry

    module = _module(ird_refine="none")
    logged: dict = {}
    module.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]
    module.trainer = _fake_trainer(  # type: ignore[assignment]
        strategy=SimpleNamespace(reduce=lambda value, reduce_op: value),
        _logger_connector=SimpleNamespace(should_update_logs=True),
    )
    gen = torch.Generator().manual_seed(5)
    cam = 3 * torch.randn(2, 4, 4, 6, generator=gen)
    batch = {
        "image": torch.randn(2, 3, 8, 12, generator=gen),
        "saliency": torch.rand(2, 1, 8, 12, generator=gen),
        "label": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
        "saliency_error": torch.randint(0, 9, (2, 8, 12), generator=gen, dtype=torch.uint8),
    }
    _, ird = module.saliency_term(batch, cam)
    module.watch_ird(cam, batch, ird)
    args = (cam, batch["saliency"], batch["label"], ird["inconsistent"], ird["threshold_map"], batch["saliency_error"])
    expected = {f"train/{key}": float(value) for key, value in ird_telemetry(*args).items()}
    assert {"train/error_precision", "train/error_recall", "train/correct_dropped"} <= set(expected) == set(logged)
    for key, value in expected.items():
        assert math.isclose(logged[key], value, rel_tol=1e-6) or (math.isnan(value) and math.isnan(logged[key])), key


def test_ird_training_adds_a_monitor_of_its_reading_and_warm_up() -> None:
    [monitor] = _module(ird_threshold_maps="floored", ird_warmup_steps=4).configure_callbacks()
    assert (monitor.collapse.reading, monitor.warmup_steps) == ("floored", 4)
    assert _module(saliency_loss="eps").configure_callbacks() == []


def test_validation_step_scores_the_methods_maps_at_the_configured_threshold(monkeypatch) -> None:
    """CAM maps (``saliency_loss: none``: ReLU of the object channels; the background channel and the unlabelled class
    left out) of 3x5 images, bg_threshold 0.6: class 1's logit a left-to-right ramp -0.5..0.5, class 2's its mirror, so
    the normalized maps are 0 0 0 .5 1 and 1 .5 0 0 0 and every row's pseudo-mask is 2 0 0 0 1. The softmax maps
    (background logit 0) would give 2 2 1 1 1, a threshold of 0.2 would give 2 2 0 1 1."""
    module = _module(saliency_loss="none", bg_threshold=0.6)
    ramp = torch.linspace(-0.5, 0.5, 5).expand(3, 5)

    def fake_forward(images: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([ramp, -ramp, torch.full((3, 5), -9.0), torch.zeros(3, 5)])
        return logits[None].expand(len(images), -1, -1, -1)

    monkeypatch.setattr(module, "forward", fake_forward)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    row = torch.tensor([2, 0, 0, 0, 1])
    batch = {"image": torch.zeros(1, 3, 3, 5), "label": torch.tensor([[1.0, 1.0, 0.0]]), "mask": row.expand(1, 3, 5)}
    module.validation_step(batch, 0)
    expected = torch.zeros(4, 5, dtype=torch.long)
    expected[0, 0], expected[1, 1], expected[2, 2] = 9, 3, 3
    assert torch.equal(module.val_cam.confusion, expected)


def test_the_pamr_options_build_the_refiner() -> None:
    assert _module(pamr_iter=3, pamr_dilations=[1, 3]).pamr.extra_repr() == "num_iter=3, dilations=(1, 3)"


def test_the_readings_the_module_accepts_are_the_losses() -> None:
    """``ird_threshold_maps``'s Literal (what the CLI validates and ``--help`` lists) names exactly the readings that
    ``epspp.losses`` implements, in its order."""
    import typing

    from epspp.losses import IRD_THRESHOLD_MAPS

    hints = typing.get_type_hints(LocalizationModule.__init__)
    assert typing.get_args(hints["ird_threshold_maps"]) == IRD_THRESHOLD_MAPS == ("normalized", "softmax", "floored")


def test_predict_step_refines_with_the_dense_crf_when_asked() -> None:
    """``refine: crf`` (the third value of the Literal): the scores are the dense CRF's refinement of the unrefined
    scores over the background and the labelled classes, and the mask their argmax."""
    pytest.importorskip("pydensecrf.densecrf")
    from epspp.ops import normalize_maps, with_background
    from epspp.ops.crf import crf_refine_scores

    module = _module(saliency_loss="eps", refine="crf", bg_threshold=0.3)
    batch = _batch([1.0, 0.0, 1.0], 21, 30)
    with torch.no_grad():
        out = module.predict_step(batch, 0)
        maps = normalize_maps(module.labelled_maps(batch["image"], batch["label"]), batch["label"])
    plain = with_background(maps, 0.3)
    torch.testing.assert_close(out["scores"], crf_refine_scores(batch["image"], plain, batch["label"]))
    assert not torch.allclose(out["scores"], plain, atol=1e-3)
    assert torch.equal(out["mask"], out["scores"].argmax(1))


def test_explain_draws_the_maps_of_the_methods_kind(monkeypatch) -> None:
    """The CAM baseline's ``explain`` (map kind relu): class 1's logit a ramp -0.5..0.5 over 5 columns gives the
    normalized localization 0 0 0 .5 1 (its softmax map under a background logit of 5 would be positive everywhere)."""
    module = _module(saliency_loss="none", bg_threshold=0.6)
    cam = torch.zeros(1, 4, 3, 5)
    cam[0, 0], cam[0, 3] = torch.linspace(-0.5, 0.5, 5), 5.0
    monkeypatch.setattr(module, "forward", lambda images: cam)
    out = module.explain(torch.zeros(1, 3, 3, 5), torch.rand(1, 1, 3, 5), torch.tensor([[1.0, 0.0, 0.0]]))
    expected = torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0]).expand(3, 5)
    torch.testing.assert_close(out["localization"][0], expected, atol=1e-4, rtol=0)
    assert out["pseudo_mask"][0].tolist() == [[0, 0, 0, 0, 1]] * 3
