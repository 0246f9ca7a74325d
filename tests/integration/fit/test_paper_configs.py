"""The VOC paper configs as a user runs them: ResNet-38d from the MXNet file, EPS's recipe, full-resolution
evaluation and the `train`-split pseudo-mask mIoU, on a tiny VOC-layout tree of images of different sizes.

ResNet-38d has 105M parameters: one random weight file is written per module and the configs run at a
32-px crop for 2 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.cli import CONFIGS, in_process, run_epspp
from fixtures.helpers import miou_of_folder, psa_to_mxnet, write_mxnet_params, write_voc_tree

VOC = CONFIGS / "voc"
SIZES = {"a": (70, 50), "b": (64, 90), "c": (50, 70), "d": (90, 64), "e": (56, 56), "f": (72, 40)}
SPLITS = {"train_aug": list(SIZES), "train": ["a", "b", "e"], "val": ["a", "b"]}
SMALL = [
    "--trainer.max_steps",
    "2",
    "--trainer.accelerator",
    "cpu",
    "--trainer.precision",
    "32-true",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.enable_progress_bar",
    "false",
    "--data.num_workers",
    "0",
    "--data.batch_size",
    "2",
    "--data.crop_size",
    "32",
    "--data.resize_long",
    "[32, 48]",
]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_voc_tree(tmp_path_factory.mktemp("voc") / "data", SIZES, SPLITS)


@pytest.fixture(scope="module")
def mxnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ResNet-38d weights in the MXNet legacy .params layout, with the ImageNet classifier."""
    from epspp.nets.resnet38d import ResNet38d

    torch.manual_seed(0)
    arrays = {psa_to_mxnet(k): v.numpy() for k, v in ResNet38d().state_dict().items() if psa_to_mxnet(k)}
    arrays["arg:linear1000_weight"] = np.zeros((1000, 4096), np.float32)
    arrays["arg:linear1000_bias"] = np.zeros(1000, np.float32)
    path = tmp_path_factory.mktemp("weights") / "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"
    write_mxnet_params(path, arrays)
    return path


def test_print_config_shows_the_eps_recipe(capfd: pytest.CaptureFixture) -> None:
    result = in_process(capfd, "fit", "--config", VOC / "localization_eps++.yaml", "--print_config", check=True)
    config = yaml.safe_load(result.stdout)
    model, data = config["model"]["init_args"], config["data"]
    assert model["backbone"] == "resnet38d" and model["output_stride"] == 8
    assert model["pretrained_path"].endswith("ilsvrc-cls_rna-a1_cls1000_ep-0001.params")
    assert model["freeze_bn"] is True and model["freeze_stem"] is True
    assert (model["lr"], model["head_lr_mult"], model["bias_lr_mult"], model["bias_decay"]) == (0.01, 10.0, 2.0, False)
    assert (model["weight_decay"], model["momentum"], model["poly_power"]) == (0.0005, 0.0005, 0.9)
    assert model["saliency_loss"] == "ird"
    assert (data["batch_size"], data["crop_size"], data["resize_long"]) == (8, 448, [256, 512])
    assert (data["color_jitter"], data["jitter_hue"], data["jitter_p"], data["train_interpolation"]) == (
        0.3,
        0.1,
        1.0,
        "bicubic",
    )
    assert data["eval_size"] is None and data["train_split"] == "train_aug"
    assert config["trainer"]["max_steps"] == 20000
    eps = yaml.safe_load(
        in_process(capfd, "fit", "--config", VOC / "localization_eps.yaml", "--print_config", check=True).stdout
    )["model"]["init_args"]
    assert (eps["saliency_loss"], eps["tau"], eps["lam"]) == ("eps", 0.4, 0.5)
    coco = yaml.safe_load(
        in_process(
            capfd, "fit", "--config", CONFIGS / "coco" / "localization_eps.yaml", "--print_config", check=True
        ).stdout
    )
    assert (
        coco["model"]["init_args"]["lam"],
        coco["data"]["batch_size"],
        coco["data"]["crop_size"],
        coco["data"]["resize_long"],
        coco["trainer"]["max_steps"],
    ) == (0.9, 16, 321, [256, 448], 256500)


def test_voc_eps_plus_plus_from_the_mxnet_file_fits_predicts_and_reports_train(
    voc_root: Path, mxnet_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_epspp(
        [
            "fit",
            "--config",
            VOC / "localization_eps++.yaml",
            "--data.root",
            voc_root,
            "--model.init_args.pretrained_path",
            mxnet_file,
            "--trainer.default_root_dir",
            run / "localization",
            *SMALL,
        ],
        cwd=tmp_path,
        timeout=600,
    )
    checkpoint = run / "localization" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    frozen = [name for name in state["state_dict"] if "bn_branch2a.running_mean" in name]
    assert frozen  # BatchNorm statistics are saved ...
    from epspp.nets.resnet38d import ResNet38d, resnet38d_state_dict

    loaded = resnet38d_state_dict(mxnet_file)
    # ... and unchanged by training (frozen), like the frozen stem's weights
    for name in (
        "b3.bn_branch2a.running_mean",
        "b7.bn_branch2b2.running_var",
        "conv1a.weight",
        "b2_2.conv_branch2a.weight",
    ):
        assert torch.equal(state["state_dict"][f"net.backbone.body.{name}"], loaded[name]), name
    assert not torch.equal(
        state["state_dict"]["net.backbone.body.b3.conv_branch2a.weight"], loaded["b3.conv_branch2a.weight"]
    )  # trained
    del loaded, ResNet38d

    masks = run / "pseudo_masks"
    run_epspp(
        [
            "predict",
            "--config",
            VOC / "pseudo_masks.yaml",
            "--data.root",
            voc_root,
            "--ckpt_path",
            checkpoint,
            "--pseudo_masks.output_dir",
            masks,
            "--trainer.accelerator",
            "cpu",
            "--data.num_workers",
            "0",
            "--model.init_args.scales",
            "[0.5, 1.0]",
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    manifest = json.loads((masks / "manifest.json").read_text())
    assert manifest["split"] == "train_aug" and manifest["evaluated"] == len(SIZES)
    assert manifest["config"]["model"]["inference_resize"] == "pil_bicubic"
    report = manifest["report"]
    assert report["split"] == "train" and report["evaluated"] == 3
    assert report["miou"] == pytest.approx(miou_of_folder(masks, voc_root, SPLITS["train"], 21), abs=0.06)
    assert manifest["miou"] == pytest.approx(miou_of_folder(masks, voc_root, SPLITS["train_aug"], 21), abs=0.06)
    for image_id, (width, height) in SIZES.items():  # every mask at its image's full resolution
        from PIL import Image

        assert Image.open(masks / f"{image_id}.png").size == (width, height)


@pytest.mark.parametrize("config", ["localization_cam.yaml", "localization_eps.yaml"])
def test_voc_cam_and_eps_configs_fit_two_steps(voc_root: Path, mxnet_file: Path, tmp_path: Path, config: str) -> None:
    result = run_epspp(
        [
            "fit",
            "--config",
            VOC / config,
            "--data.root",
            voc_root,
            "--model.init_args.pretrained_path",
            mxnet_file,
            "--trainer.default_root_dir",
            tmp_path / "run",
            *SMALL,
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file(), result.stderr[-2000:]


def test_missing_weight_file_is_one_line(voc_root: Path, capfd: pytest.CaptureFixture) -> None:
    result = in_process(capfd, "fit", "--config", VOC / "localization_eps.yaml", "--data.root", voc_root, *SMALL)
    assert result.returncode == 2
    assert "epspp: error: weight file weights/ilsvrc-cls_rna-a1_cls1000_ep-0001.params does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_convert_weights_writes_a_pth_that_loads_the_same(
    mxnet_file: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    from epspp.nets.resnet38d import resnet38d_state_dict

    target = tmp_path / "resnet38d.pth"
    result = in_process(capfd, "convert-weights", mxnet_file, target, check=True)
    assert "wrote" in result.stdout and target.is_file()
    converted, original = resnet38d_state_dict(target), resnet38d_state_dict(mxnet_file)
    assert converted.keys() == original.keys() and all(torch.equal(converted[k], original[k]) for k in original)
    again = in_process(capfd, "convert-weights", mxnet_file, target)
    assert again.returncode == 2 and "exists" in again.stderr
