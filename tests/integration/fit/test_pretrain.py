"""Stage 0: ``epspp fit --config configs/demo/pretrain.yaml`` on a tiny corpus writes ``backbone.pth``, which
loads as the ``pretrained_path`` of stage 1 and stage 3; missing or mismatched files are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.cli import CONFIGS, call_main

from epspp.data.pretrain_corpus import generate_pretrain_corpus
from epspp.nets.weights import WeightsError
from epspp.tasks import LocalizationModule, SegmentationModule

BACKBONE = [
    "--model.init_args.backbone",
    "resnet10t",
    "--model.init_args.backbone_kwargs",
    "{channels: [8, 16, 32, 64], stem_width: 8}",
]
NET = {"backbone": "resnet10t", "backbone_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8}}
TINY = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.logger",
    "false",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--data.num_workers",
    "0",
    "--data.batch_size",
    "4",
    "--data.crop_size",
    "32",
    "--data.resize_long",
    "[32, 40]",
    "--data.eval_size",
    "32",
    *BACKBONE,
]


def epspp_main(args: list[str], cwd: Path) -> tuple[int, str]:
    """``epspp ARGS`` in this process (the CLI's main), in ``cwd``: (exit status, stderr)."""
    code, _, err = call_main(args, cwd)
    return code, err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 2-step pretraining on a 12-image corpus (resumed once to step 3)."""
    work = tmp_path_factory.mktemp("pretrain")
    generate_pretrain_corpus(work / "corpus", num_images=12, num_val=2, image_size=32)
    args = [
        "fit",
        "--config",
        str(CONFIGS / "demo/pretrain.yaml"),
        "--data.root",
        "corpus",
        "--trainer.default_root_dir",
        "run",
        *TINY,
    ]
    code, err = epspp_main([*args, "--trainer.max_steps", "2"], work)
    assert code == 0, err
    first = torch.load(work / "run/backbone.pth", weights_only=True)
    code, err = epspp_main([*args, "--trainer.max_steps", "3", "--ckpt_path", "last"], work)
    assert code == 0, err
    checkpoint = torch.load(work / "run/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3  # resumed from step 2, not restarted
    second = torch.load(work / "run/backbone.pth", weights_only=True)
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)
    assert not [p.name for p in (work / "run").iterdir() if p.name.endswith(".tmp")]
    return work / "run"


def test_backbone_is_the_trained_networks_own_state_dict(pretrained: Path) -> None:
    state = torch.load(pretrained / "backbone.pth", weights_only=True)
    trained = torch.load(pretrained / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    prefix = "net.backbone.body."
    assert state.keys() == {k[len(prefix) :] for k in trained if k.startswith(prefix)}
    assert all(torch.equal(value, trained[prefix + key]) for key, value in state.items())


@pytest.mark.parametrize("output_stride", [8, 16])
def test_backbone_loads_into_stage_1_and_stage_3(pretrained: Path, output_stride: int) -> None:
    state = torch.load(pretrained / "backbone.pth", weights_only=True)
    path = str(pretrained / "backbone.pth")
    stage1 = LocalizationModule(num_classes=5, pretrained_path=path, output_stride=output_stride, **NET)
    stage3 = SegmentationModule(
        num_classes=5, architecture="deeplabv3plus", pretrained_path=path, output_stride=output_stride, **NET
    )
    for loaded in (stage1.net.backbone.body.state_dict(), stage3.net.encoder.state_dict()):
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    fresh = LocalizationModule(num_classes=5, output_stride=output_stride, **NET).net.backbone.body.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in state.items() if v.is_floating_point())


def test_a_mismatched_or_missing_backbone_is_one_line(pretrained: Path, tmp_path: Path) -> None:
    path = pretrained / "backbone.pth"
    with pytest.raises(WeightsError, match=r"backbone\.pth \(backbone resnet10t\) does not fit .* wrong shapes"):
        LocalizationModule(
            num_classes=5,
            pretrained_path=str(path),
            backbone="resnet10t",
            backbone_kwargs={"channels": [16, 32, 64, 128], "stem_width": 8},
        )
    with pytest.raises(WeightsError, match=r"nope\.pth does not exist .*pretrain\.yaml"):
        SegmentationModule(num_classes=5, pretrained_path=str(tmp_path / "nope.pth"), **NET)
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match=r"cut\.pth"):
        LocalizationModule(num_classes=5, pretrained_path=str(tmp_path / "cut.pth"), **NET)
    # through the command line: exit status 2 and one line naming the file and what does not fit
    code, err = epspp_main(
        [
            "fit",
            "--config",
            str(CONFIGS / "demo/localization_cam.yaml"),
            "--data.root",
            str(pretrained.parent / "corpus"),
            "--trainer.max_steps",
            "1",
            *TINY[:-2],
            "--model.init_args.backbone_kwargs",
            "{channels: [8, 16, 32, 32], stem_width: 8}",
            "--model.init_args.pretrained_path",
            str(path),
        ],
        tmp_path,
    )
    errors = [line for line in err.splitlines() if line.startswith("epspp: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert str(path) in errors[0] and "layer4" in errors[0] and "wrong shapes" in errors[0]
