"""Lightning callbacks: the pseudo-mask writer and sample visualisation."""

from epspp.callbacks.pseudo_masks import PseudoMaskWriter
from epspp.callbacks.sample_panels import SamplePanelLogger

__all__ = ["PseudoMaskWriter", "SamplePanelLogger"]
