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


@pytest.fixture(scope="module")
def random_net() -> ResNet38d:
    """One ResNet-38d with random weights and random BatchNorm statistics (105M parameters: built once)."""
    torch.manual_seed(0)
    net = ResNet38d()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


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
