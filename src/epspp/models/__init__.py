"""The old import path of the LightningModules (configs name ``epspp.models.LocalizationModule``).

Kept so that users' configs and checkpoints that name it keep working; new code imports ``epspp.tasks``
(the LightningModules) and ``epspp.nets`` (the networks).
"""

from epspp.tasks import LocalizationModule, SegmentationModule

__all__ = ["LocalizationModule", "SegmentationModule"]
