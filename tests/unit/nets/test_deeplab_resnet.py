"""backbone: deeplab_resnet101 -- deeplab-pytorch's DeepLab-v2 ResNet-101: its checkpoints (written here with
random weights under its parameter names) load, and the logits on our ImageNet-normalized RGB equal a
straightforward functional MSRA ResNet-101 + ASPP computed here on the caffe BGR convention.
Frozen BatchNorm and deeplab-pytorch's parameter groups (main.py get_params) are checked too."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from epspp.nets.weights import WeightsError
from epspp.tasks.segmentation import SegmentationModule

C = 4  # object classes: the network predicts 5
LAYERS = (
    ("layer2", 3, 64, 256, 1, 1),
    ("layer3", 4, 256, 512, 2, 1),
    ("layer4", 23, 512, 1024, 1, 2),
    ("layer5", 3, 1024, 2048, 1, 4),
)
RATES = (6, 12, 18, 24)
MEAN_BGR = (104.008, 116.669, 122.675)
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])

pytestmark = pytest.mark.usefixtures("one_thread")


def _conv_bn(
    state: dict, prefix: str, cin: int, cout: int, k: int, generator: torch.Generator, residual_end: bool = False
) -> None:
    state[f"{prefix}.conv.weight"] = torch.randn(cout, cin, k, k, generator=generator, dtype=torch.float64) * math.sqrt(
        2.0 / (cin * k * k)
    )
    scale = 0.2 if residual_end else 1.0  # small residual branches keep 33 random blocks finite
    state[f"{prefix}.bn.weight"] = scale * (0.5 + torch.rand(cout, generator=generator, dtype=torch.float64))
    state[f"{prefix}.bn.bias"] = 0.1 * torch.randn(cout, generator=generator, dtype=torch.float64)
    state[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=generator, dtype=torch.float64)
    state[f"{prefix}.bn.running_var"] = 0.5 + torch.rand(cout, generator=generator, dtype=torch.float64)
    state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)


def deeplab_pytorch_state(num_outputs: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict under deeplab-pytorch's names (resnet.py / deeplabv2.py), random weights; ASPP if num_outputs."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv_bn(state, "layer1.conv1", 3, 64, 7, g)
    for layer, blocks, cin, cout, _, _ in LAYERS:
        for b in range(1, blocks + 1):
            prefix, first_in = f"{layer}.block{b}", cin if b == 1 else cout
            _conv_bn(state, f"{prefix}.reduce", first_in, cout // 4, 1, g)
            _conv_bn(state, f"{prefix}.conv3x3", cout // 4, cout // 4, 3, g)
            _conv_bn(state, f"{prefix}.increase", cout // 4, cout, 1, g, residual_end=True)
            if b == 1:
                _conv_bn(state, f"{prefix}.shortcut", cin, cout, 1, g)
    if num_outputs:
        for i in range(4):
            state[f"aspp.c{i}.weight"] = 0.01 * torch.randn(num_outputs, 2048, 3, 3, generator=g, dtype=torch.float64)
            state[f"aspp.c{i}.bias"] = torch.randn(num_outputs, generator=g, dtype=torch.float64)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def reference_logits(state: dict[str, torch.Tensor], bgr: torch.Tensor) -> torch.Tensor:
    """MSRA ResNet-101 + ASPP written out with torch.nn.functional from the state dict (float64)."""
    s = {k: v.double() for k, v in state.items() if v.is_floating_point()}

    def cbr(
        x: torch.Tensor, prefix: str, stride: int = 1, padding: int = 0, dilation: int = 1, relu: bool = True
    ) -> torch.Tensor:
        x = F.conv2d(x, s[f"{prefix}.conv.weight"], None, stride, padding, dilation)
        x = F.batch_norm(
            x,
            s[f"{prefix}.bn.running_mean"],
            s[f"{prefix}.bn.running_var"],
            s[f"{prefix}.bn.weight"],
            s[f"{prefix}.bn.bias"],
            training=False,
            eps=1e-5,
        )
        return F.relu(x) if relu else x

    x = F.max_pool2d(cbr(bgr, "layer1.conv1", 2, 3), 3, 2, 1, ceil_mode=True)
    for layer, blocks, _, _, stride, dilation in LAYERS:
        for b in range(1, blocks + 1):
            p, st = f"{layer}.block{b}", stride if b == 1 else 1
            h = cbr(x, f"{p}.reduce", st)  # the stride on the 1x1 reduce conv
            h = cbr(h, f"{p}.conv3x3", 1, dilation, dilation)
            h = cbr(h, f"{p}.increase", relu=False)
            x = F.relu(h + (cbr(x, f"{p}.shortcut", st, relu=False) if b == 1 else x))
    return sum(
        F.conv2d(x, s[f"aspp.c{i}.weight"], s[f"aspp.c{i}.bias"], padding=r, dilation=r) for i, r in enumerate(RATES)
    )


@pytest.fixture(scope="module")
def picture() -> tuple[torch.Tensor, torch.Tensor]:
    """One 41x57 RGB picture: (our ImageNet-normalized RGB, deeplab-pytorch's BGR 0..255 minus mean)."""
    rgb = np.random.default_rng(0).integers(0, 256, (41, 57, 3)).astype(np.float64)
    ours = torch.from_numpy(((rgb / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))[None]
    caffe = torch.from_numpy((rgb[..., ::-1] - np.array(MEAN_BGR)).transpose(2, 0, 1).copy())[None]
    return ours, caffe


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> tuple[str, dict]:
    """A ``deeplabv2_resnet101_msc-*.pth``-style file: every key prefixed ``base.`` (MSC wrapper), ASPP of C+1."""
    state = deeplab_pytorch_state(C + 1)
    path = tmp_path_factory.mktemp("deeplab") / "deeplabv2_resnet101_msc-test.pth"
    torch.save({f"base.{k}": v for k, v in state.items()}, path)
    return str(path), state


@pytest.fixture(scope="module")
def loaded(trained_checkpoint) -> SegmentationModule:
    return SegmentationModule(
        num_classes=C,
        backbone="deeplab_resnet101",
        pretrained_path=trained_checkpoint[0],
        freeze_bn=True,
        head_lr_mult=10.0,
        bias_lr_mult=2.0,
        bias_decay=False,
    ).eval()


def test_names_are_deeplab_pytorchs(loaded) -> None:
    names = set(loaded.net.encoder.state_dict()) | {f"aspp.{k}" for k in loaded.net.head.state_dict()}
    for key in (
        "layer1.conv1.conv.weight",
        "layer2.block1.reduce.bn.running_mean",
        "layer5.block3.increase.conv.weight",
        "aspp.c0.weight",
        "aspp.c3.bias",
    ):
        assert key in names


def test_trained_checkpoint_logits_equal_the_functional_network(loaded, trained_checkpoint, picture) -> None:
    ours, caffe = picture
    net = loaded.double()
    with torch.no_grad():
        logits = net(ours)
        expected = F.interpolate(
            reference_logits(trained_checkpoint[1], caffe), ours.shape[-2:], mode="bilinear", align_corners=False
        )
        native = net.net.logits(ours)
    loaded.float()
    assert native.shape[-2:] == (6, 8)  # output stride 8: ceil-mode pool, 41x57 -> 21x29 -> 11x15 -> 6x8
    assert logits.shape == (1, C + 1, 41, 57)
    assert float(expected.abs().max()) > 1.0  # a non-trivial output
    torch.testing.assert_close(logits, expected, rtol=1e-6, atol=1e-6)


def test_the_stems_pool_rounds_up_where_the_first_conv_gives_an_even_side(loaded, trained_checkpoint) -> None:
    """deeplab-pytorch's stem pools with ``ceil_mode=True``: a 40x56 picture -> conv1 20x28 (even sides, where
    ceil and floor differ) -> pool 11x15 (floor: 10x14) -> layer3 6x8 (floor: 5x7)."""
    rgb = np.random.default_rng(1).integers(0, 256, (40, 56, 3)).astype(np.float64)
    ours = torch.from_numpy(((rgb / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))[None]
    caffe = torch.from_numpy((rgb[..., ::-1] - np.array(MEAN_BGR)).transpose(2, 0, 1).copy())[None]
    net = loaded.double()
    with torch.no_grad():
        native = net.net.logits(ours)
        expected = reference_logits(trained_checkpoint[1], caffe)
    loaded.float()
    assert native.shape[-2:] == expected.shape[-2:] == (6, 8)
    torch.testing.assert_close(native, expected, rtol=1e-6, atol=1e-6)


def test_coco_init_checkpoint_loads_the_backbone_and_skips_its_classifier(tmp_path, capsys) -> None:
    """``deeplabv1_resnet101-coco.pth``: backbone keys unprefixed plus DeepLab-v1's ``fc`` of 91 classes."""
    state = deeplab_pytorch_state(None, seed=1)
    state |= {"fc.weight": torch.randn(91, 2048, 1, 1), "fc.bias": torch.randn(91)}
    path = tmp_path / "deeplabv1_resnet101-coco.pth"
    torch.save(state, path)
    module = SegmentationModule(num_classes=C, backbone="deeplab_resnet101", pretrained_path=str(path))
    encoder = module.net.encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in state.items() if k.startswith("layer"))
    assert "fc.weight" in capsys.readouterr().err
    assert float(module.net.head.c0.bias.detach().abs().max()) == 0.0  # ASPP: a fresh N(0, 0.01) init, zero bias


def test_aspp_of_another_class_count_is_skipped(trained_checkpoint, capsys) -> None:
    module = SegmentationModule(num_classes=C + 3, backbone="deeplab_resnet101", pretrained_path=trained_checkpoint[0])
    assert module.net.head.c0.weight.shape[0] == C + 4
    assert "aspp.c0.weight" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_other_mismatches_name_the_keys(tmp_path, trained_checkpoint, change: str) -> None:
    state = {f"base.{k}": v for k, v in trained_checkpoint[1].items()}
    key = "base.layer3.block2.conv3x3.conv.weight"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        state["base.layer6.block1.reduce.conv.weight"] = torch.zeros(1)
    else:
        state[key] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    name = "layer6.block1.reduce.conv.weight" if change == "unexpected" else "layer3.block2.conv3x3.conv.weight"
    with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
        SegmentationModule(num_classes=C, backbone="deeplab_resnet101", pretrained_path=str(path))


def test_frozen_batchnorm_under_train(loaded, picture) -> None:
    ours, _ = picture
    ours = ours.float()
    with torch.no_grad():
        before = loaded(ours)
        loaded.train()
        during = loaded(ours)
        loaded.eval()
    torch.testing.assert_close(during, before)  # training mode uses the loaded statistics
    norms = [m for m in loaded.net.encoder.modules() if "BatchNorm" in type(m).__name__]
    assert len(norms) == 1 + 3 * (3 + 4 + 23 + 3) + 4  # stem, 3 per block, 4 shortcuts
    assert not any(p.requires_grad for m in norms for p in m.parameters())


def test_parameter_groups_are_deeplab_pytorchs(loaded) -> None:
    """main.py get_params: conv weights of the layers at lr, ASPP weights 10x, ASPP biases 20x without decay;
    nothing else (BatchNorm is frozen)."""
    loaded.trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimizer = loaded.configure_optimizers()["optimizer"]
    loaded.trainer = None
    lr = loaded.hparams.lr
    convs = [m for name, m in loaded.net.encoder.named_modules() if isinstance(m, torch.nn.Conv2d)]
    aspp = [loaded.net.head.get_submodule(f"c{i}") for i in range(4)]
    expected = {
        (lr, 5e-4): {id(m.weight) for m in convs},
        (10 * lr, 5e-4): {id(m.weight) for m in aspp},
        (20 * lr, 0.0): {id(m.bias) for m in aspp},
    }
    got = [(g["lr"], g["weight_decay"], {id(p) for p in g["params"]}) for g in optimizer.param_groups]
    assert len(got) == 3
    for (group_lr, decay), params in expected.items():
        assert [ids for g_lr, g_decay, ids in got if g_lr == pytest.approx(group_lr) and g_decay == decay] == [params]
    assert all(m.bias is None for m in convs)


def test_imagenet_only_init_in_deeplab_pytorchs_names_loads(tmp_path, capsys) -> None:
    """The ImageNet-only init for COCO (README, "Files you need"): MSRA ResNet-101's ImageNet caffemodel converted
    to deeplab-pytorch's names, with its 1000-class ``fc`` and no ASPP: the backbone loads, ``fc`` is skipped."""
    state = deeplab_pytorch_state(None, seed=2)
    state |= {"fc.weight": torch.randn(1000, 2048), "fc.bias": torch.randn(1000)}
    path = tmp_path / "resnet101_imagenet-deeplab.pth"
    torch.save(state, path)
    module = SegmentationModule(num_classes=C, backbone="deeplab_resnet101", pretrained_path=str(path))
    encoder = module.net.encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in state.items() if k.startswith("layer"))
    err = capsys.readouterr().err
    assert "fc.weight (1000, 2048)" in err and "the ASPP starts from N(0, 0.01)" in err
