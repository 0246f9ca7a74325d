"""Lightning callbacks: the mask writer, sample visualisation, stage 0's backbone export, the progress bar."""

from epspp.callbacks.backbone_export import BackboneExport
from epspp.callbacks.mask_writer import MaskWriter, PseudoMaskWriter
from epspp.callbacks.progress import StepProgressBar
from epspp.callbacks.sample_panels import SamplePanelLogger

__all__ = ["BackboneExport", "MaskWriter", "PseudoMaskWriter", "SamplePanelLogger", "StepProgressBar"]
