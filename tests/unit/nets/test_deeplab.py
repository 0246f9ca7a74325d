"""DeepLab-v2 / -v3+ heads over timm encoders (epspp.nets.deeplab) on tiny timm test models."""

from __future__ import annotations

import math

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from fixtures.helpers import TINY, TINY_KWARGS
from torch import nn

from epspp.nets.deeplab import DeepLab
from epspp.nets.deeplab_resnet import ASPP
from epspp.nets.weights import WeightsError

NUM_OUTPUTS = 6  # C + 1 with C = 5 object classes

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(architecture: str = "deeplabv2", output_stride: int = 8, **kwargs) -> DeepLab:
    torch.manual_seed(0)
    return DeepLab(NUM_OUTPUTS, architecture, TINY, output_stride, backbone_kwargs=TINY_KWARGS, **kwargs).eval()


@pytest.mark.parametrize("architecture", ["deeplabv2", "deeplabv3plus"])
@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(50, 38), (33, 65)])
def test_logits_at_input_size_with_c_plus_1_channels(architecture: str, output_stride: int, size: tuple) -> None:
    net = tiny(architecture, output_stride)
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        logits = net(images)
        features = net.encoder(images)
    assert logits.shape == (2, NUM_OUTPUTS, *size)
    assert torch.isfinite(logits).all()
    # the encoder is dilated: its last feature map has the requested output stride
    assert features[-1].shape[-2:] == tuple(math.ceil(s / output_stride) for s in size)
    assert net.encoder.feature_info.reduction()[-1] == output_stride


@pytest.mark.parametrize("backbone", [TINY, "test_convnext"])
def test_v3plus_decoder_fuses_stride_4_features(backbone: str) -> None:
    """Low-level features at stride 4, whichever level of the encoder that is (ResNet: 1, ConvNeXt: 0)."""
    if backbone not in timm.list_models(backbone):
        pytest.skip(f"timm {timm.__version__} has no {backbone}")
    kwargs = TINY_KWARGS if backbone == TINY else None
    net = DeepLab(NUM_OUTPUTS, "deeplabv3plus", backbone, 8, backbone_kwargs=kwargs).eval()
    seen = {}
    net.head["low"].register_forward_hook(lambda module, inputs, output: seen.update(shape=inputs[0].shape))
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 48)).shape == (1, NUM_OUTPUTS, 64, 48)
    assert seen["shape"][-2:] == (16, 12)


def test_aspp_v2_is_a_sum_of_four_dilated_convs() -> None:
    net = tiny("deeplabv2")
    head = net.head
    assert isinstance(head, ASPP)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    in_channels = net.encoder.feature_info.channels()[-1]
    for conv, rate in zip(convs, (6, 12, 18, 24), strict=True):
        assert conv.kernel_size == (3, 3)
        assert conv.dilation == (rate, rate) and conv.padding == (rate, rate) and conv.stride == (1, 1)
        assert (conv.in_channels, conv.out_channels) == (in_channels, NUM_OUTPUTS)
        assert conv.bias is not None
    # nothing else in the head: no BN, no activation, no 1x1 projection
    assert not [m for m in head.modules() if not isinstance(m, ASPP | nn.Conv2d)]
    # the head sums the four branches, and DeepLab-v2 upsamples that sum bilinearly to the input
    with torch.no_grad():
        for conv in convs:
            conv.bias.normal_()
        images = torch.randn(2, 3, 50, 38)
        features = net.encoder(images)[-1]
        expected = sum(
            F.conv2d(features, c.weight, c.bias, padding=r, dilation=r)
            for c, r in zip(convs, (6, 12, 18, 24), strict=True)
        )
        torch.testing.assert_close(head(features), expected)
        upsampled = F.interpolate(expected, (50, 38), mode="bilinear", align_corners=False)
        torch.testing.assert_close(net(images), upsampled)


def test_resnet101_deeplab_v2_is_dilated_to_output_stride_8() -> None:
    """The papers' network: layer3/layer4 of ResNet-101 keep stride 8 through dilation 2 and 4.

    (timm, like torchvision, gives the first block of a dilated stage the previous stage's dilation.)
    """
    net = DeepLab(21, "deeplabv2", "resnet101", 8)
    assert net.encoder.feature_info.channels()[-1] == 2048
    assert net.head.c0.in_channels == 2048
    for layer, first, dilation, depth in (("layer3", 1, 2, 23), ("layer4", 2, 4, 3)):
        blocks = list(getattr(net.encoder, layer))
        assert len(blocks) == depth
        assert [b.conv2.dilation[0] for b in blocks] == [first] + [dilation] * (depth - 1)
        assert all(b.conv2.stride == (1, 1) for b in blocks)
        assert blocks[0].downsample[0].stride == (1, 1)
    with torch.no_grad():
        assert net.encoder(torch.randn(1, 3, 40, 40))[-1].shape == (1, 2048, 5, 5)


def test_pretrained_path_loads_local_encoder_weights(tmp_path) -> None:
    source = timm.create_model(TINY, **(TINY_KWARGS or {}))
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.uniform_(-1, 1)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)  # a whole timm checkpoint: its classifier is left out
    safetensors.torch.save_file(source.state_dict(), tmp_path / "weights.safetensors")
    reference = source.state_dict()
    for weights in (path, tmp_path / "weights.safetensors"):
        net = DeepLab(NUM_OUTPUTS, "deeplabv2", TINY, 8, pretrained_path=str(weights), backbone_kwargs=TINY_KWARGS)
        loaded = net.encoder.state_dict()
        assert loaded and all(torch.equal(value, reference[key]) for key, value in loaded.items())
    with pytest.raises(WeightsError, match="does not exist"):
        DeepLab(NUM_OUTPUTS, "deeplabv2", TINY, 8, pretrained_path=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match=r"weights\.pth \(backbone resnet18\) does not fit"):  # another network
        DeepLab(NUM_OUTPUTS, "deeplabv2", "resnet18", 8, pretrained_path=str(path))


def test_unknown_backbone_and_bad_output_stride_fail_clearly() -> None:
    with pytest.raises(ValueError, match="timm has no model"):
        DeepLab(NUM_OUTPUTS, "deeplabv2", "no_such_net_xyz", 8)
    with pytest.raises(ValueError, match="output_stride"):
        DeepLab(NUM_OUTPUTS, "deeplabv2", TINY, 4, backbone_kwargs=TINY_KWARGS)


@pytest.mark.parametrize(("output_stride", "rates"), [(8, (12, 24, 36)), (16, (6, 12, 18))])
def test_v3plus_aspp_has_the_papers_rates_for_its_output_stride(output_stride: int, rates: tuple) -> None:
    """DeepLab-v3+ (Chen et al., ECCV 2018): ASPP rates 6, 12, 18 at output stride 16, doubled at 8; a 1x1 branch
    and the image pooling beside them."""
    branches = tiny("deeplabv3plus", output_stride).head["aspp"].branches
    assert [branch[0].kernel_size for branch in branches] == [(1, 1)] + [(3, 3)] * 3
    assert [branch[0].dilation for branch in branches] == [(1, 1)] + [(r, r) for r in rates]
    assert [branch[0].padding for branch in branches] == [(0, 0)] + [(r, r) for r in rates]


# ------------------------------------------- variation pass (issue 34 item 6)
def test_v3plus_fuses_the_upsampled_aspp_output_before_the_low_level_features() -> None:
    """DeepLab-v3+'s decoder: concat(upsample(ASPP(last)), low-level 48) in that order (Chen et al., ECCV 2018)."""
    net = tiny("deeplabv3plus", 16)
    seen: dict = {}
    net.head["fuse"].register_forward_hook(lambda module, inputs, output: seen.update(fused=inputs[0]))
    images = torch.randn(1, 3, 50, 38)
    with torch.no_grad():
        net.logits(images)
        features = net.encoder(images)
        low = net.head["low"](features[1])  # the ResNet's stride-4 level
        high = F.interpolate(net.head["aspp"](features[-1]), low.shape[-2:], mode="bilinear", align_corners=False)
    assert low.shape[1] == 48
    torch.testing.assert_close(seen["fused"], torch.cat([high, low], dim=1))


def test_freeze_bn_freezes_the_encoders_batchnorm_only() -> None:
    """``freeze_bn`` (away from its default) on a timm encoder: its BatchNorm layers are frozen, the new head's stay
    trainable BatchNorm2d."""
    frozen, plain = tiny("deeplabv3plus", 16, freeze_bn=True), tiny("deeplabv3plus", 16)

    def norms(module: nn.Module) -> list[nn.Module]:
        return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]

    assert norms(plain.encoder) and not norms(frozen.encoder)
    assert norms(frozen.head) and all(p.requires_grad for m in norms(frozen.head) for p in m.parameters())


@pytest.mark.parametrize(
    ("architecture", "output_stride", "pretrained", "message"),
    [
        (
            "deeplabv3plus",
            8,
            False,
            "is DeepLab-v2 at output stride 8; got architecture deeplabv3plus, output_stride 8",
        ),
        ("deeplabv2", 16, False, "is DeepLab-v2 at output stride 8; got architecture deeplabv2, output_stride 16"),
        ("deeplabv2", 8, True, "weights are not downloadable by epspp: set pretrained_path"),
    ],
)
def test_deeplab_resnet101_is_v2_at_stride_8_and_needs_its_weights_file(
    architecture: str, output_stride: int, pretrained: bool, message: str
) -> None:
    from epspp.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        DeepLab(NUM_OUTPUTS, architecture, "deeplab_resnet101", output_stride, pretrained=pretrained)


def test_the_paper_configs_name_the_deeplab_pytorch_network() -> None:
    """The papers' stage-3 configs name ``deeplab_resnet101``, the name DeepLab builds deeplab-pytorch's network for."""
    from pathlib import Path

    import yaml

    from epspp.nets.deeplab import DEEPLAB_RESNET

    configs = Path(__file__).resolve().parents[3] / "configs" / "voc"
    for name in ("segmentation_wsss.yaml", "segmentation_ssss.yaml"):
        assert yaml.safe_load((configs / name).read_text())["model"]["init_args"]["backbone"] == DEEPLAB_RESNET
    assert DEEPLAB_RESNET == "deeplab_resnet101"


def test_aspp_v3_projects_its_branches_then_the_image_pooling() -> None:
    """ASPPv3: the 1x1 and dilated 3x3 branches, then the image pooling (ReLU of a 1x1 conv of the spatial mean,
    spread over the map), concatenated in that order and projected; on a 5x7 map of 2 images."""
    from epspp.nets.deeplab import ASPPv3

    torch.manual_seed(0)
    aspp = ASPPv3(4, (1, 2), width=3).eval()
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        conv = aspp.pool[1]
        pooled = F.relu(F.conv2d(x.mean(dim=(2, 3), keepdim=True), conv.weight, conv.bias)).expand(-1, -1, 5, 7)
        assert pooled.abs().sum() > 0
        expected = aspp.project(torch.cat([branch(x) for branch in aspp.branches] + [pooled], dim=1))
        torch.testing.assert_close(aspp(x), expected)
