"""Stage 0's backbone file: the feature extractor's own state dict, written atomically at the end of a fit by
rank 0 only, and a clear refusal on a module without a backbone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from epspp.callbacks.backbone_export import BackboneExport
from epspp.errors import ConfigError


def _module() -> nn.Module:
    module = nn.Module()
    module.net = nn.Module()
    module.net.backbone = nn.Module()
    module.net.backbone.body = nn.Linear(2, 3)
    module.net.head = nn.Linear(3, 1)  # not exported
    return module


def test_the_backbone_body_is_written_relative_to_the_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    module, trainer = _module(), SimpleNamespace(default_root_dir=str(tmp_path / "run"), is_global_zero=True)
    export = BackboneExport("stage0/backbone.pth")
    export.on_fit_start(trainer, module)
    export.on_fit_end(trainer, module)
    target = tmp_path / "run" / "stage0" / "backbone.pth"
    state = torch.load(target, weights_only=True)
    assert sorted(state) == ["bias", "weight"] and torch.equal(state["weight"], module.net.backbone.body.weight)
    assert [p.name for p in target.parent.iterdir()] == ["backbone.pth"]  # no temporary file left
    assert capsys.readouterr().out == (
        f"[epspp] wrote the backbone {target} (2 tensors): use it as --model.init_args.pretrained_path {target}\n"
    )


def test_other_ranks_write_nothing(tmp_path: Path) -> None:
    BackboneExport().on_fit_end(SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=False), _module())
    assert list(tmp_path.iterdir()) == []


def test_a_module_without_a_backbone_is_refused_at_the_fit_start(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"BackboneExport writes the backbone of a LocalizationModule; this run "
        r"trains a Linear: remove the callback from the config",
    ):
        BackboneExport().on_fit_start(SimpleNamespace(default_root_dir=str(tmp_path)), nn.Linear(1, 1))


# ------------------------------------------------------------ variation pass (issue 34 item 6)
def test_the_default_and_an_absolute_file_name(tmp_path: Path) -> None:
    """The default ``backbone.pth`` in the run folder is the file the run folder's write rule protects."""
    from jsonargparse import Namespace

    from epspp.runs.folder import fit_outputs_by_key

    trainer = SimpleNamespace(default_root_dir=str(tmp_path / "run"))
    assert BackboneExport().path(trainer) == tmp_path / "run" / "backbone.pth"
    assert BackboneExport(str(tmp_path / "elsewhere.pth")).path(trainer) == tmp_path / "elsewhere.pth"
    callback = Namespace(class_path="epspp.callbacks.BackboneExport", init_args=Namespace())
    config = Namespace(trainer=Namespace(callbacks=[callback]))
    assert BackboneExport().path(trainer) in fit_outputs_by_key(config, tmp_path / "run")
