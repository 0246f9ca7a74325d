"""Lightning callbacks: the pseudo-mask writer, sample visualisation, stage 0's backbone export, the progress bar."""

from epspp.callbacks.backbone_export import BackboneExport
from epspp.callbacks.progress import StepProgressBar
from epspp.callbacks.pseudo_masks import PseudoMaskWriter
from epspp.callbacks.sample_panels import SamplePanelLogger

__all__ = ["BackboneExport", "PseudoMaskWriter", "SamplePanelLogger", "StepProgressBar"]
