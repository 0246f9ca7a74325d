"""SegmentationModule's multi-scale inputs (deeplab-pytorch's MSC: a loss on every scale and on their max, the
max at test time) and its dense CRF at validate/test/predict, each against a computation written out here."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures.helpers import TINY, TINY_KWARGS
from PIL import Image

from epspp.losses import segmentation_loss
from epspp.tasks.segmentation import SegmentationModule

C = 3
SCALES = (1.0, 0.75, 0.5)

pytestmark = pytest.mark.usefixtures("one_thread")


def make_module(**kwargs) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(num_classes=C, backbone=TINY, backbone_kwargs=TINY_KWARGS, **kwargs).eval()


def pil_nearest(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """deeplab-pytorch's main.py resize_labels: PIL NEAREST on each label map."""
    return torch.stack(
        [
            torch.from_numpy(
                np.array(Image.fromarray(m.numpy().astype(np.float32)).resize(size[::-1], resample=Image.NEAREST))
            ).long()
            for m in mask
        ]
    )


def test_msc_outputs_are_each_scale_and_their_max() -> None:
    module = make_module(msc_scales=SCALES)
    images = torch.randn(2, 3, 65, 49)
    with torch.no_grad():
        outputs = module.msc_logits(images)
        each = [
            module.net.logits(
                F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False) if s != 1.0 else images
            )
            for s in SCALES
        ]
        logits = module(images)
    # 65x49 -> 48x36 (0.75) and 32x24 (0.5), each at stride 8 (timm pads: ceil)
    assert [o.shape[-2:] for o in outputs] == [(9, 7), (6, 5), (4, 3), (9, 7)]
    for got, expected in zip(outputs[:3], each, strict=True):
        torch.testing.assert_close(got, expected)
    resized = [F.interpolate(e, (9, 7), mode="bilinear", align_corners=False) for e in each]
    torch.testing.assert_close(outputs[3], torch.maximum(torch.maximum(resized[0], resized[1]), resized[2]))
    # test time: the max, bilinearly upsampled to the input
    torch.testing.assert_close(logits, F.interpolate(outputs[3], (65, 49), mode="bilinear", align_corners=False))


def test_msc_loss_sums_the_loss_of_every_output_with_nearest_labels(monkeypatch) -> None:
    module = make_module(msc_scales=SCALES, pseudo_weight=0.3)
    module.trainer = SimpleNamespace(optimizers=[SimpleNamespace(param_groups=[{"lr": 0.1}])])
    logged = {}
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.update(values))
    generator = torch.Generator().manual_seed(0)
    mask = torch.randint(0, C + 1, (2, 65, 49), generator=generator)
    mask[0, :10] = 255
    batch = {
        "image": torch.randn(2, 3, 65, 49, generator=generator),
        "mask": mask,
        "is_labeled": torch.tensor([1.0, 0.0]),
    }
    loss = module.training_step(batch, 0)
    with torch.no_grad():
        outputs = module.msc_logits(batch["image"])
    expected = sum(
        segmentation_loss(o, pil_nearest(mask, tuple(o.shape[-2:])), batch["is_labeled"], 0.3) for o in outputs
    )
    torch.testing.assert_close(loss.detach(), expected)
    assert len(outputs) == 4 and loss.requires_grad


def test_crf_refines_each_image_at_its_own_size(monkeypatch) -> None:
    pytest.importorskip("pydensecrf.densecrf")
    from epspp.ops.crf import dense_crf, to_uint8_rgb

    module = make_module(crf=True)
    images = torch.randn(2, 3, 40, 36)
    batch = {"image": images, "size": torch.tensor([[40, 36], [31, 25]])}  # image 1 padded to the batch
    with torch.no_grad():
        plain = module.predict_logits(images)
        refined = module.predict_probs(batch)
    rgb = to_uint8_rgb(images)
    torch.testing.assert_close(refined[0], torch.from_numpy(dense_crf(rgb[0], plain[0].numpy())))
    torch.testing.assert_close(
        refined[1, :, :31, :25], torch.from_numpy(dense_crf(rgb[1, :31, :25], plain[1, :, :31, :25].numpy()))
    )
    torch.testing.assert_close(refined[1, :, 31:], plain[1, :, 31:])  # the padding is left as it was
    assert not torch.allclose(refined, plain)
