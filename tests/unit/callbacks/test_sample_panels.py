"""SamplePanelLogger's schedule and its W&B calls (a stand-in WandbLogger records them): the steps it logs at, the
images of a batch it draws, the per-class IoU table with a NaN class, and the ranks and loggers it stays quiet for."""

from __future__ import annotations

from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from epspp.callbacks.sample_panels import SamplePanelLogger


class RecordingWandb(WandbLogger):
    """A WandbLogger that starts no run and records what it is asked to log."""

    def __init__(self) -> None:  # (no W&B run)
        self.calls: list[tuple] = []

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs: object) -> None:
        self.calls.append((key, step, images[0].shape, kwargs))

    def log_table(
        self, key: str, columns: list | None = None, data: list | None = None, step: int | None = None, **kwargs: object
    ) -> None:
        self.calls.append((key, step, columns, data))


class Explaining(pl.LightningModule):
    class_names = ["background", "a", "b"]

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def explain(self, images: torch.Tensor, saliency: torch.Tensor, labels: torch.Tensor) -> dict:
        self.seen.append(len(images))
        assert not self.training  # drawn in eval mode
        shape = (len(images), *images.shape[-2:])
        return {
            "localization": torch.rand(shape),
            "inconsistent": torch.zeros(shape, dtype=torch.bool),
            "pseudo_mask": torch.full(shape, 1),
        }


def test_panels_every_n_steps_of_the_first_samples_on_rank_0_with_wandb_only() -> None:
    logger, module = RecordingWandb(), Explaining()
    module.train()
    callback = SamplePanelLogger(every_n_steps=3, num_samples=1)
    batch = {"image": torch.zeros(2, 3, 6, 10), "saliency": torch.rand(2, 1, 6, 10), "label": torch.ones(2, 2)}
    for step in range(1, 8):
        callback.on_train_batch_end(
            SimpleNamespace(loggers=[logger], global_step=step, is_global_zero=True), module, None, batch, 0
        )
    assert [call[1] for call in logger.calls] == [1, 4, 7] and module.seen == [1, 1, 1] and module.training
    key, _, shape, kwargs = logger.calls[0]
    assert key == "samples/train" and shape[0] > 6 and shape[1] == 5 * 10 + 4 * 2  # one row of five 10-px panels
    assert kwargs == {"caption": ["image | saliency | localization | inconsistent (IRD) | pseudo-mask"]}
    for trainer in (
        SimpleNamespace(loggers=[logger], global_step=1, is_global_zero=False),  # another rank
        SimpleNamespace(loggers=[], global_step=1, is_global_zero=True),  # no W&B
    ):
        callback.on_train_batch_end(trainer, module, None, batch, 0)
    assert len(logger.calls) == 3


def test_the_per_class_iou_table_after_validation() -> None:
    logger, module = RecordingWandb(), Explaining()
    module.last_iou = torch.tensor([0.5, float("nan"), 0.123456])
    callback = SamplePanelLogger()
    trainer = SimpleNamespace(loggers=[logger], global_step=40, is_global_zero=True, sanity_checking=True)
    callback.on_validation_epoch_end(trainer, module)  # the sanity check: nothing
    trainer.sanity_checking = False
    callback.on_validation_epoch_end(trainer, module)
    assert logger.calls == [
        ("val/per_class_iou", 40, ["class", "IoU"], [["background", 50.0], ["a", None], ["b", 12.35]])
    ]
