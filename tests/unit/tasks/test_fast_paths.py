"""Issue 35: the fast paths of both tasks (``channels_last``, ``torch_compile``) are options, off by default, that
give today's numbers."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch

from epspp.tasks import LocalizationModule, SegmentationModule

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"backbone": "resnet10t", "backbone_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}


def _module(task: type, **kwargs) -> LocalizationModule | SegmentationModule:
    torch.manual_seed(0)
    extra = {"saliency_loss": "none", "output_stride": 8} if task is LocalizationModule else {}
    return task(num_classes=3, **TINY, **extra, **kwargs)


def _step(module: LocalizationModule | SegmentationModule, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step's loss and the first convolution's gradient, on a non-square batch of 2."""
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, optimizers=[])  # type: ignore[assignment]
    module.trainer.optimizers.append(module.configure_optimizers()["optimizer"])
    monkeypatch.setattr(module, "log_dict", lambda *a, **k: None)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    generator = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.randn(2, 3, 40, 56, generator=generator),
        "label": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
        "mask": torch.randint(0, 4, (2, 40, 56), generator=generator),
        "is_labeled": torch.ones(2),
    }
    loss = module.training_step(batch, 0)
    loss.backward()
    first = next(p for p in module.net.parameters() if p.dim() == 4)
    return loss.detach(), first.grad.clone()


@pytest.mark.parametrize("task", [LocalizationModule, SegmentationModule])
def test_fast_paths_are_off_by_default(task: type) -> None:
    parameters = inspect.signature(task).parameters
    assert parameters["channels_last"].default is False and parameters["torch_compile"].default is False
    assert {"channels_last", "torch_compile"} == set(task.speed_options)


@pytest.mark.parametrize("task", [LocalizationModule, SegmentationModule])
def test_channels_last_gives_the_same_loss_and_gradients(task: type, monkeypatch) -> None:
    plain, fast = _module(task), _module(task, channels_last=True)
    assert fast.state_dict().keys() == plain.state_dict().keys()  # checkpoints are interchangeable
    weights = [p for p in fast.net.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    seen = []
    conv = next(m for m in fast.net.modules() if isinstance(m, torch.nn.Conv2d))
    nhwc = torch.channels_last
    conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=nhwc)))
    loss, grad = _step(plain, monkeypatch)
    fast_loss, fast_grad = _step(fast, monkeypatch)
    assert seen == [True]  # the network's input arrives in channels-last format
    torch.testing.assert_close(fast_loss, loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_grad, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("task", [LocalizationModule, SegmentationModule])
def test_torch_compile_compiles_the_network_in_place(task: type, monkeypatch) -> None:
    """The compiled numbers are not checked here: ``torch.compile`` on the CPU imports dynamo and builds C++
    kernels with the system compiler, 9 s to tens of seconds on this 2-core CI even for a tiny network (over the
    3 s budget of a test); ``nn.Module.compile`` keeps the parameter names, so checkpoints do not change."""
    compiled: list[torch.nn.Module] = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    _module(task)
    assert compiled == []
    module = _module(task, torch_compile=True)
    assert compiled == [module.net]
