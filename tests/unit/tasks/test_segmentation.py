"""SegmentationModule (stage 3): optimizer groups and poly schedule, the SSSS loss weighting, TTA and
the validation/test mIoU, each checked against a hand computation."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from fixtures.helpers import TINY, TINY_KWARGS

from epspp.data.datamodule import EPSDataModule
from epspp.tasks.segmentation import SegmentationModule

C = 5  # object classes of the synthetic dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def make_module(**kwargs) -> SegmentationModule:
    torch.manual_seed(0)
    options = {"num_classes": C, "backbone": TINY, "backbone_kwargs": TINY_KWARGS} | kwargs
    return SegmentationModule(**options)


def attach_fake_trainer(module: SegmentationModule, max_steps: int = 10) -> None:
    """The trainer attributes the module reads, without a Trainer (``training_step`` can then be called)."""
    module.trainer = SimpleNamespace(estimated_stepping_batches=max_steps, optimizers=[])
    module.trainer.optimizers.append(module.configure_optimizers()["optimizer"])


# ------------------------------------------------------------------------ optimisation
def test_paper_recipe_is_the_default() -> None:
    defaults = {k: p.default for k, p in inspect.signature(SegmentationModule).parameters.items()}
    assert defaults["optimizer"] == "sgd"
    assert defaults["head_lr_mult"] == 10.0
    assert defaults["poly_power"] == 0.9
    assert defaults["architecture"] == "deeplabv2"
    assert defaults["backbone"] == "resnet101"
    assert defaults["output_stride"] == 8


@pytest.mark.parametrize("architecture", ["deeplabv2", "deeplabv3plus"])
def test_head_gets_10x_lr_and_poly_decay(architecture: str) -> None:
    lr, max_steps = 0.01, 10
    module = make_module(architecture=architecture, lr=lr, momentum=0.9, weight_decay=5e-4)
    attach_fake_trainer(module, max_steps)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert scheduler["interval"] == "step"
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    encoder = [g for g in optimizer.param_groups if g["lr"] == pytest.approx(lr)]
    head = [g for g in optimizer.param_groups if g["lr"] == pytest.approx(10 * lr)]
    assert len(encoder) + len(head) == len(optimizer.param_groups)
    for group in optimizer.param_groups:
        assert group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    assert set().union(*(ids(g["params"]) for g in encoder)) == ids(module.net.encoder.parameters())
    assert set().union(*(ids(g["params"]) for g in head)) == ids(module.net.head.parameters())
    # every trainable parameter is optimised, exactly once
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(module.parameters()))

    # poly: lr_k = base_lr * (1 - k / max_steps) ** 0.9, stepped every batch
    for k in range(1, max_steps + 1):
        optimizer.step()
        scheduler["scheduler"].step()
        factor = (1 - k / max_steps) ** 0.9
        assert all(g["lr"] == pytest.approx(lr * factor, abs=1e-12) for g in encoder)
        assert all(g["lr"] == pytest.approx(10 * lr * factor, abs=1e-12) for g in head)
    assert all(g["lr"] == 0.0 for g in head)


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_other_optimizers_keep_the_head_multiplier(name: str, cls: type) -> None:
    module = make_module(optimizer=name, lr=1e-3, head_lr_mult=3.0, weight_decay=0.0)
    attach_fake_trainer(module, 100)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is cls
    assert sorted({round(g["lr"], 12) for g in optimizer.param_groups}) == pytest.approx([1e-3, 3e-3])


# ------------------------------------------------------------------------------- loss
def _batch(is_labeled: list[float], size: tuple[int, int] = (36, 28), seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    n = len(is_labeled)
    mask = torch.randint(0, C + 1, (n, *size), generator=generator)
    # a different share of ignored pixels per image, so that per-image and pooled means differ
    for i in range(n):
        mask[i, : 3 * (i + 1)] = 255
    return {
        "image": torch.randn(n, 3, *size, generator=generator),
        "mask": mask,
        "is_labeled": torch.tensor(is_labeled),
    }


@pytest.mark.parametrize("is_labeled", [[1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0]])
@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_loss_is_one_weighted_mean_over_valid_pixels(monkeypatch, is_labeled: list[float], weight: float) -> None:
    """sum_p w_p CE_p / sum_p w_p (w = 1 labelled, ``weight`` pseudo); weight 1 is plain cross-entropy."""
    module = make_module(pseudo_weight=weight, lr=0.01).eval()  # eval: the same BN statistics in both passes
    attach_fake_trainer(module)
    logged = {}
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.update(values))
    batch = _batch(is_labeled)
    loss = module.training_step(batch, 0)

    with torch.no_grad():
        logits = module(batch["image"])
    pixel = F.cross_entropy(logits, batch["mask"], ignore_index=255, reduction="none")
    valid = batch["mask"] != 255
    w = torch.tensor([1.0 if labeled else weight for labeled in is_labeled])[:, None, None] * valid
    torch.testing.assert_close(loss.detach(), (w * pixel).sum() / w.sum())
    if weight == 1.0:
        torch.testing.assert_close(loss.detach(), F.cross_entropy(logits, batch["mask"], ignore_index=255))
    torch.testing.assert_close(logged["train/loss"].detach(), loss.detach())
    labeled = batch["is_labeled"].bool()
    for name, selected in (("gt", labeled), ("pseudo", ~labeled)):  # diagnostics: plain CE of each kind
        if selected.any():
            expected = F.cross_entropy(logits[selected], batch["mask"][selected], ignore_index=255)
            torch.testing.assert_close(logged[f"train/loss_{name}"], expected)
        else:
            assert f"train/loss_{name}" not in logged
    assert float(logged["train/lr"]) == pytest.approx(0.01)
    assert loss.requires_grad


def test_training_step_under_a_trainer_logs_and_learns(synthetic_root: Path, tmp_path: Path) -> None:
    """One real optimisation step (Lightning logging path, no monkeypatching) changes the weights."""
    module = make_module(optimizer="adam", lr=1e-3)
    datamodule = EPSDataModule(
        str(synthetic_root),
        task="segmentation",
        pseudo_mask_dir=None,
        train_split="labeled_10pct",
        batch_size=2,
        num_workers=0,
        crop_size=32,
        resize_long=(32, 48),
    )
    before = [p.detach().clone() for p in module.net.head.parameters()]
    trainer = pl.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    assert {"train/loss", "train/loss_gt"} <= set(trainer.callback_metrics)
    assert "train/loss_pseudo" not in trainer.callback_metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, module.net.head.parameters(), strict=True))


# -------------------------------------------------------------------------------- TTA
def test_predict_logits_without_tta_is_the_softmax() -> None:
    module = make_module().eval()
    images = torch.randn(2, 3, 40, 30)
    with torch.no_grad():
        torch.testing.assert_close(module.predict_logits(images), module(images).softmax(dim=1))


def test_flip_tta_averages_the_plain_and_flipped_passes() -> None:
    module = make_module(tta_flip=True).eval()
    images = torch.randn(2, 3, 40, 30)
    with torch.no_grad():
        plain = module(images).softmax(dim=1)
        flipped = module(images.flip(-1)).softmax(dim=1).flip(-1)
        scores = module.predict_logits(images)
    torch.testing.assert_close(scores, (plain + flipped) / 2)
    assert not torch.allclose(scores, plain)  # the flip matters (non-symmetric input)


def test_multiscale_flip_tta_averages_every_scale_and_flip() -> None:
    scales = (0.5, 1.0, 1.5)
    module = make_module(tta_scales=scales, tta_flip=True).eval()
    images = torch.randn(1, 3, 40, 30)
    expected = torch.zeros(1, C + 1, 40, 30)
    with torch.no_grad():
        for scale in scales:
            scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
            for flip in (False, True):
                inputs = scaled.flip(-1) if flip else scaled
                logits = F.interpolate(module(inputs), (40, 30), mode="bilinear", align_corners=False)
                probs = logits.softmax(dim=1)
                expected += probs.flip(-1) if flip else probs
        scores = module.predict_logits(images)
    torch.testing.assert_close(scores, expected / 6)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(1, 40, 30))


# ------------------------------------------------------------------------ evaluation
def _manual_scores(module: SegmentationModule, loader) -> tuple[np.ndarray, float, float]:
    """IoU per class (NaN when absent from both), mIoU and pixel accuracy from a numpy confusion matrix."""
    k = C + 1
    confusion = np.zeros((k, k), np.int64)
    module.eval()
    with torch.no_grad():
        for batch in loader:
            preds = module.predict_logits(batch["image"]).argmax(dim=1).numpy().ravel()
            target = batch["mask"].numpy().ravel()
            valid = target != 255
            confusion += np.bincount(k * target[valid] + preds[valid], minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return iou, float(np.nanmean(iou)), float(tp.sum() / confusion.sum())


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_epoch_miou_matches_a_manual_confusion_matrix(synthetic_root: Path, tmp_path: Path, capsys, stage: str) -> None:
    module = make_module(tta_flip=True)
    with torch.no_grad():  # a head bias that spreads the random network's predictions over classes
        module.net.head.c0.bias.copy_(torch.linspace(-0.5, 0.5, C + 1))
    datamodule = EPSDataModule(
        str(synthetic_root),
        task="segmentation",
        val_split="val",
        test_split="val",
        batch_size=4,
        num_workers=0,
        eval_size=48,
    )
    trainer = pl.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    results = getattr(trainer, stage)(module, datamodule=datamodule, verbose=False)[0]
    prefix = "val" if stage == "validate" else "test"

    iou, miou, accuracy = _manual_scores(module, getattr(datamodule, f"{prefix}_dataloader")())
    assert (~np.isnan(iou)).sum() >= 3, "predictions should cover several classes"
    assert results[f"{prefix}/mIoU"] == pytest.approx(miou, abs=1e-6)
    assert results[f"{prefix}/pixel_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    for name, value in zip(module.class_names, iou, strict=True):
        key = f"{prefix}/IoU/{name}"
        if np.isnan(value):
            assert key not in results
        else:
            assert results[key] == pytest.approx(value, abs=1e-6)

    printed = capsys.readouterr().out
    assert f"{prefix} segmentation IoU" in printed
    for name, value in zip(module.class_names, iou, strict=True):
        line = next(line for line in printed.splitlines() if line.split() and line.split()[0] == name)
        if np.isnan(value):
            assert line.split()[-1] == "n/a"
        else:  # printed with 2 decimals from float32 sums; allow the last digit to round either way
            assert float(line.split()[-1]) == pytest.approx(100 * value, abs=0.006)
    printed_miou = [float(line.split()[-1]) for line in printed.splitlines() if line.startswith("mIoU")]
    assert printed_miou == [pytest.approx(100 * miou, abs=0.006)]


def test_every_inference_option_is_a_hyper_parameter() -> None:
    """``inference_options`` maps the module to its mask folders' ``provenance.json``: each names a parameter."""
    parameters = set(inspect.signature(SegmentationModule.__init__).parameters)
    assert set(SegmentationModule.inference_options) <= parameters
    assert set(SegmentationModule.speed_options) <= parameters


# ------------------------------------------- variation pass (issue 34 item 6): options away from their defaults
def test_momentum_decay_and_poly_power_reach_the_optimizer_and_the_schedule() -> None:
    module = make_module(lr=0.01, momentum=0.7, weight_decay=1e-3, poly_power=2.0)
    attach_fake_trainer(module, 10)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert {(g["momentum"], g["weight_decay"]) for g in optimizer.param_groups} == {(0.7, 1e-3)}
    for k in range(1, 4):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - k / 10) ** 2)  # power 2, not 0.9


def test_predict_step_crops_each_image_to_its_size_and_labels_every_class_without_labels() -> None:
    """A batch padded to 40x30 holding a 25x17 image: its scores and mask are cropped to 25x17 (not 17x25); without a
    ``label`` key (an unlabelled split) every class counts as present, with one the batch's labels are passed on."""
    module = make_module().eval()
    images = torch.randn(2, 3, 40, 30)
    batch = {"id": ["a", "b"], "image": images, "size": torch.tensor([[40, 30], [25, 17]])}
    with torch.no_grad():
        probs = module.predict_logits(images)
        out = module.predict_step(batch, 0)
    assert out["id"] == ["a", "b"]
    assert [tuple(s.shape) for s in out["scores"]] == [(C + 1, 40, 30), (C + 1, 25, 17)]
    torch.testing.assert_close(out["scores"][1], probs[1, :, :25, :17])
    assert [tuple(m.shape) for m in out["mask"]] == [(40, 30), (25, 17)]
    assert torch.equal(out["mask"][1], probs[1, :, :25, :17].argmax(0))
    assert torch.equal(out["label"], torch.ones(2, C))
    batch["label"] = torch.tensor([[1.0, 0, 0, 0, 1], [0, 1, 0, 0, 0]])
    with torch.no_grad():
        assert torch.equal(module.predict_step(batch, 0)["label"], batch["label"])


def test_crf_workers_reach_the_crf_and_teardown_stops_it(monkeypatch) -> None:
    pytest.importorskip("pydensecrf.densecrf")
    assert make_module().crf is None
    module = make_module(crf=True, crf_workers=2)
    assert module.crf is not None and module.crf.workers == 2
    closed: list[bool] = []
    monkeypatch.setattr(module.crf, "close", lambda: closed.append(True))
    module.teardown("predict")
    assert closed == [True]


def test_the_architecture_and_output_stride_reach_the_network() -> None:
    """Both away from their defaults (deeplabv2, 8): a DeepLab-v3+ head over an encoder of output stride 16."""
    module = make_module(architecture="deeplabv3plus", output_stride=16)
    assert module.net.architecture == "deeplabv3plus" and set(module.net.head) == {"aspp", "low", "fuse", "classifier"}
    assert module.net.encoder.feature_info.reduction()[-1] == 16
    assert make_module().net.encoder.feature_info.reduction()[-1] == 8
