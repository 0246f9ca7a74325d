"""Lightning callbacks: the pseudo-mask writer and sample visualisation."""

from epspp.callbacks.pseudo_masks import PseudoMaskWriter

__all__ = ["PseudoMaskWriter"]
