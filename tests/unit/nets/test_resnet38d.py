"""ResNet-38d: structure of the reference network, the three weight files users have, frozen layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.helpers import psa_to_mxnet, write_mxnet_params

from epspp.errors import ConfigError
from epspp.nets.backbone import FeatureBackbone
from epspp.nets.resnet38d import ResNet38d, mxnet_to_psa
from epspp.nets.weights import WeightsError, read_mxnet_params


def _random_statistics(module: torch.nn.Module, spread: float = 0.5) -> torch.nn.Module:
    """``module`` in eval mode, random BatchNorm affine terms and statistics (biases and means of std ``spread``)."""
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, spread)
                norm.running_mean.normal_(0, spread)
                norm.running_var.uniform_(0.5, 2.0)
    return module.eval()


@pytest.fixture(scope="module")
def random_net() -> ResNet38d:
    """One ResNet-38d with random weights and random BatchNorm statistics (105M parameters: built once)."""
    torch.manual_seed(0)
    return _random_statistics(ResNet38d(), spread=0.1)


def test_structure_matches_the_reference(random_net: ResNet38d) -> None:
    assert sum(p.numel() for p in random_net.parameters()) == 105_070_912  # PSA/EPS resnet38d.Net
    names = set(random_net.state_dict())
    assert {
        "conv1a.weight",
        "b2.conv_branch1.weight",
        "b2_1.bn_branch2a.running_mean",
        "b4_5.conv_branch2b1.weight",
        "b6.conv_branch2b2.weight",
        "b7.bn_branch2b2.running_var",
        "bn7.bias",
    } <= names
    assert "b2_1.conv_branch1.weight" not in names  # same-shape blocks have no projection
    with torch.no_grad():
        features = random_net(torch.randn(1, 3, 64, 48))
    assert features.shape == (1, 4096, 8, 6)  # output stride 8
    assert features.min() >= 0  # relu(bn7(x))


def test_mxnet_legacy_v2_and_psa_pth_load_to_identical_networks(random_net: ResNet38d, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in random_net.state_dict().items()}
    arrays = {psa_to_mxnet(k): v.numpy() for k, v in state.items() if psa_to_mxnet(k)}
    arrays["arg:linear1000_weight"] = np.ones((1000, 4096), np.float32)  # the ImageNet classifier: dropped
    arrays["arg:linear1000_bias"] = np.ones(1000, np.float32)
    write_mxnet_params(tmp_path / "legacy.params", arrays, "legacy")
    write_mxnet_params(tmp_path / "v2.params", arrays, "v2")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "psa.pth")  # DataParallel-prefixed names
    del arrays
    for name in ("legacy.params", "v2.params", "psa.pth"):
        loaded = ResNet38d(str(tmp_path / name)).state_dict()
        mismatched = [k for k in state if "num_batches" not in k and not torch.equal(loaded[k], state[k])]
        assert not mismatched, (name, mismatched[:3])


def test_every_layout_of_the_ndarray_format_reads_back(tmp_path: Path) -> None:
    arrays = {
        "arg:a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "aux:b": np.array([1.5, -2.0], np.float16),
        "arg:c": np.arange(4, dtype=np.int64).reshape(1, 2, 2),
    }
    for layout in ("legacy", "v1", "v2"):
        write_mxnet_params(tmp_path / f"{layout}.params", arrays, layout)
        read = read_mxnet_params(tmp_path / f"{layout}.params")
        assert list(read) == list(arrays)
        for key, array in arrays.items():
            assert read[key].dtype == array.dtype and np.array_equal(read[key], array), (layout, key)


def test_mxnet_names_map_as_eps_convert_mxnet_to_torch() -> None:
    assert mxnet_to_psa("arg:res2a_branch1_weight") == "b2.conv_branch1.weight"
    assert mxnet_to_psa("arg:bn2b1_branch2a_gamma") == "b2_1.bn_branch2a.weight"
    assert mxnet_to_psa("aux:bn4b5_branch2b1_moving_var") == "b4_5.bn_branch2b1.running_var"
    assert mxnet_to_psa("aux:bn2b1_branch2a_moving_mean") == "b2_1.bn_branch2a.running_mean"
    assert mxnet_to_psa("arg:res7a_branch2b2_weight") == "b7.conv_branch2b2.weight"
    assert mxnet_to_psa("arg:bn7_beta") == "bn7.bias"
    assert mxnet_to_psa("arg:linear1000_weight") is None
    with pytest.raises(WeightsError, match="fc9_weight"):
        mxnet_to_psa("arg:fc9_weight")


def test_bad_weight_files_fail_with_the_keys_at_fault(random_net: ResNet38d, tmp_path: Path) -> None:
    partial = {k: v for k, v in random_net.state_dict().items() if not k.startswith("b7.")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"partial\.pth.*missing 16 keys: b7\..*unexpected 1 keys: extra\.weight"):
        ResNet38d(str(tmp_path / "partial.pth"))
    write_mxnet_params(tmp_path / "cut.params", {"arg:conv1a_weight": np.zeros((64, 3, 3, 3), np.float32)})
    (tmp_path / "cut.params").write_bytes((tmp_path / "cut.params").read_bytes()[:100])
    with pytest.raises(WeightsError, match=r"cut\.params is truncated"):
        ResNet38d(str(tmp_path / "cut.params"))
    (tmp_path / "junk.params").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not an MXNet .params file"):
        read_mxnet_params(tmp_path / "junk.params")
    with pytest.raises(ConfigError, match="pretrained_path"):
        FeatureBackbone("resnet38d", pretrained=True, output_stride=8)
    with pytest.raises(ConfigError, match="output stride 8"):
        FeatureBackbone("resnet38d", output_stride=16)


def test_frozen_batchnorm_and_stem_stay_frozen_under_train(random_net: ResNet38d, tmp_path: Path) -> None:
    torch.save(random_net.state_dict(), tmp_path / "w.pth")
    backbone = FeatureBackbone(
        "resnet38d", pretrained_path=str(tmp_path / "w.pth"), output_stride=8, freeze_bn=True, freeze_stem=True
    )
    backbone.train()  # what Lightning does before every training epoch
    before = {k: v.clone() for k, v in backbone.state_dict().items() if "running" in k}
    out = backbone(torch.randn(2, 3, 32, 32))
    out.mean().backward()
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # statistics never updated
    trainable = {name for name, p in backbone.named_parameters() if p.requires_grad}
    assert not any(".bn" in name or name.startswith("body.bn") for name in trainable)  # BN has no parameters left
    assert not any(name.split(".")[1] in ResNet38d.stem_names for name in trainable)  # conv1a, b2, b2_1, b2_2
    assert "body.b3.conv_branch2a.weight" in trainable
    # in eval mode the frozen network computes what the reference network computes
    backbone.eval()
    image = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(backbone(image), random_net(image), atol=1e-4, rtol=1e-4)


# ------------------------------------------- variation pass (issue 34 item 6)
def test_strides_dilations_and_dropouts_are_psas(random_net: ResNet38d) -> None:
    """jiwoon-ahn/psa network/resnet38d.py (EPS's copy): b2, b3, b4 stride 2 (their 3x3 conv and projection); b5's
    first conv dilation 1 then 2, b5_1 and b5_2 dilation 2; the bottlenecks b6 and b7 dilation 4, dropout 0.3 and 0.5;
    every 3x3 convolution padded by its dilation."""
    convs = {name: m for name, m in random_net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    strided = {name for name, m in convs.items() if m.stride != (1, 1)}
    assert strided == {f"b{i}.{c}" for i in (2, 3, 4) for c in ("conv_branch2a", "conv_branch1")}
    dilated = {name: m.dilation[0] for name, m in convs.items() if m.dilation != (1, 1)}
    assert dilated == {
        "b5.conv_branch2b1": 2,
        "b5_1.conv_branch2a": 2,
        "b5_1.conv_branch2b1": 2,
        "b5_2.conv_branch2a": 2,
        "b5_2.conv_branch2b1": 2,
        "b6.conv_branch2b1": 4,
        "b7.conv_branch2b1": 4,
    }
    assert all(m.padding == m.dilation for m in convs.values() if m.kernel_size == (3, 3))
    drops = {name: m.p for name, m in random_net.named_modules() if isinstance(m, torch.nn.Dropout2d)}
    assert drops == {"b6.dropout_2b1": 0.3, "b6.dropout_2b2": 0.3, "b7.dropout_2b1": 0.5, "b7.dropout_2b2": 0.5}


def test_blocks_are_pre_activated_with_the_shortcut_taken_as_psa_takes_it() -> None:
    """PSA's ResBlock / ResBlock_bot written out with torch.nn.functional on tiny widths: BN -> ReLU before each
    convolution; the projection of the ACTIVATED input where the shape changes, the raw input itself where it does
    not; in the bottleneck 1x1 -> dilated 3x3 -> 1x1 and always the projection."""
    from epspp.nets.resnet38d import BottleneckBlock, ResBlock

    F = torch.nn.functional

    def bn(x: torch.Tensor, norm: torch.nn.BatchNorm2d) -> torch.Tensor:
        return F.relu(
            F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
        )

    torch.manual_seed(0)
    x = torch.randn(1, 4, 9, 11)
    projected = _random_statistics(ResBlock(4, 3, 6, stride=2, first_dilation=1, dilation=2))
    a = bn(x, projected.bn_branch2a)
    inner = bn(F.conv2d(a, projected.conv_branch2a.weight, stride=2, padding=1), projected.bn_branch2b1)
    branch = F.conv2d(inner, projected.conv_branch2b1.weight, padding=2, dilation=2)
    with torch.no_grad():
        torch.testing.assert_close(projected(x), F.conv2d(a, projected.conv_branch1.weight, stride=2) + branch)
        same = _random_statistics(ResBlock(4, 3, 4))
        a = bn(x, same.bn_branch2a)
        branch = F.conv2d(
            bn(F.conv2d(a, same.conv_branch2a.weight, padding=1), same.bn_branch2b1),
            same.conv_branch2b1.weight,
            padding=1,
        )
        torch.testing.assert_close(same(x), x + branch)
        bottleneck = _random_statistics(BottleneckBlock(4, 8, dilation=2, dropout=0.3))
        a = bn(x, bottleneck.bn_branch2a)
        h = bn(F.conv2d(a, bottleneck.conv_branch2a.weight), bottleneck.bn_branch2b1)
        h = bn(F.conv2d(h, bottleneck.conv_branch2b1.weight, padding=2, dilation=2), bottleneck.bn_branch2b2)
        expected = F.conv2d(a, bottleneck.conv_branch1.weight) + F.conv2d(h, bottleneck.conv_branch2b2.weight)
        torch.testing.assert_close(bottleneck(x), expected)


def test_weight_files_lose_their_classifiers_and_dataparallel_prefix(tmp_path: Path) -> None:
    """A PSA/EPS ``.pth``: ``module.`` removed, EPS's ``fc8`` and the ImageNet ``linear1000`` dropped; an MXNet file:
    names mapped, float16 arrays as float32, ``linear1000`` dropped, a key without a counterpart refused."""
    from epspp.nets.resnet38d import resnet38d_state_dict

    one = torch.ones(2)
    torch.save(
        {"module.conv1a.weight": one, "module.fc8.weight": one, "linear1000.bias": one, "b2.bn_branch2a.weight": one},
        tmp_path / "eps.pth",
    )
    assert set(resnet38d_state_dict(tmp_path / "eps.pth")) == {"conv1a.weight", "b2.bn_branch2a.weight"}
    arrays = {"arg:conv1a_weight": np.ones((2, 3), np.float16), "arg:linear1000_weight": np.ones(2, np.float32)}
    write_mxnet_params(tmp_path / "w.params", arrays)
    state = resnet38d_state_dict(tmp_path / "w.params")
    assert list(state) == ["conv1a.weight"] and state["conv1a.weight"].dtype == torch.float32
    write_mxnet_params(tmp_path / "odd.params", {"arg:res2a_branch1_gamma": np.ones(2, np.float32)})
    with pytest.raises(WeightsError, match=r"odd\.params: key 'arg:res2a_branch1_gamma' has no ResNet-38d counterpart"):
        resnet38d_state_dict(tmp_path / "odd.params")
