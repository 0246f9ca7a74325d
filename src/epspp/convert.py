"""``epspp convert-weights IN OUT.pth``: the ResNet-38d ImageNet weights as a PyTorch file, converted once.

Clusters without the MXNet file can then share the ``.pth`` (``pretrained_path`` takes either).
"""

from __future__ import annotations

from pathlib import Path

from epspp.errors import EPSError
from epspp.tasks.checkpoint import atomic_torch_save


def convert_weights(source: str | Path, target: str | Path, overwrite: bool = False) -> int:
    """Write the PSA-named backbone tensors of ``source`` to ``target`` (checked against the network first).

    Returns the number of tensors written.
    """
    from epspp.nets.resnet38d import ResNet38d, resnet38d_state_dict
    from epspp.nets.weights import load_checked

    target = Path(target)
    if target.resolve() == Path(source).resolve():
        raise EPSError(
            f"the target {target} is the source file: converting would replace the weights it reads "
            "(also with --overwrite); choose another name"
        )
    if target.exists() and not overwrite:
        raise EPSError(f"{target} exists: choose another name or pass --overwrite")
    state = resnet38d_state_dict(source)
    load_checked(ResNet38d(), state, source)  # refuses files that do not fill the network
    atomic_torch_save(state, target, "write")
    return len(state)
