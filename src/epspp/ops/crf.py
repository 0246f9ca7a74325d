"""Dense CRF (Kraehenbuehl & Koltun, NIPS 2011) as DeepLab post-processes its output.

``dense_crf`` follows deeplab-pytorch's ``libs/utils/crf.py``: unary ``-log(clip(p, 1e-5, 1))``, a
Gaussian kernel (``pos_xy_std``, weight ``pos_w``) and a bilateral kernel (``bi_xy_std``, ``bi_rgb_std``,
weight ``bi_w``), mean-field inference for ``iterations`` steps; defaults are its ``configs/voc12.yaml``.
``DenseCRF`` runs it over a batch of images in worker processes.  The solver is ``pydensecrf2``
(``pip install 'epspp[crf]'``; ``make install`` includes it).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from epspp.constants import IMAGENET_MEAN, IMAGENET_STD
from epspp.errors import ConfigError


def require_solver() -> Any:
    """pydensecrf's ``densecrf`` module, or a ConfigError saying what to install."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as error:
        raise ConfigError(
            "dense CRF needs pydensecrf2: pip install 'epspp[crf]' (or `make install`), "
            "or set crf: false / refine: none"
        ) from error
    return dcrf


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    iterations: int = 10,
    pos_w: float = 3.0,
    pos_xy_std: float = 1.0,
    bi_w: float = 4.0,
    bi_xy_std: float = 67.0,
    bi_rgb_std: float = 3.0,
) -> np.ndarray:
    """Refine class probabilities with a fully connected CRF.

    Args:
        image: (H, W, 3) uint8 RGB.
        probs: (C, H, W) float class probabilities (or non-negative scores: only ``-log p`` per pixel
            matters, up to a per-pixel constant).
        iterations: mean-field steps.
        pos_w: weight of the Gaussian (smoothness) kernel.
        pos_xy_std: spatial std (pixels) of the Gaussian kernel.
        bi_w: weight of the bilateral (appearance) kernel.
        bi_xy_std: spatial std (pixels) of the bilateral kernel.
        bi_rgb_std: colour std of the bilateral kernel.

    Returns:
        (C, H, W) float32 refined probabilities (they sum to 1 over C).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probs must be (C, H, W) with (H, W) = {image.shape[:2]}, got {probs.shape}")
    dcrf = require_solver()
    classes, height, width = probs.shape
    unary = -np.log(np.clip(probs, 1e-5, 1.0)).reshape(classes, -1).astype(np.float32)
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    crf.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=np.ascontiguousarray(image), compat=bi_w)
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(classes, height, width)


def to_uint8_rgb(images: torch.Tensor, mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD) -> np.ndarray:
    """Normalized (B, 3, H, W) images back to (B, H, W, 3) uint8 RGB."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    pixels = ((images.float() * std_t + mean_t) * 255).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def crf_refine_scores(images: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, **params: Any) -> torch.Tensor:
    """Dense CRF on pseudo-mask scores, over the background and each image's labelled classes only.

    Args:
        images: (B, 3, H, W) normalized images.
        scores: (B, C+1, H, W) non-negative scores, background first (``with_background``'s output).
        labels: (B, C) multi-hot image labels.
        params: ``dense_crf``'s parameters.

    Returns:
        (B, C+1, H, W) refined probabilities; 0 for the classes an image is not labelled with.
    """
    rgb = to_uint8_rgb(images)
    refined = torch.zeros_like(scores)
    for i in range(len(scores)):
        keep = torch.cat([labels.new_zeros(1, dtype=torch.long), torch.nonzero(labels[i]).flatten() + 1])
        probs = dense_crf(rgb[i], scores[i, keep].float().cpu().numpy(), **params)
        refined[i, keep.to(scores.device)] = torch.from_numpy(probs).to(scores)
    return refined


@dataclass
class DenseCRF:
    """``dense_crf`` over lists of images, in ``workers`` processes (0: in this process).

    The pool starts at the first call (spawned processes: no fork of a process with CUDA or threads)
    and lives until ``close``.
    """

    workers: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # ``dense_crf``'s keyword arguments; {} = its defaults
    _pool: Executor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"crf_workers must be >= 0, got {self.workers}")
        require_solver()  # fail at configuration, not after an epoch of inference

    def __call__(self, images: list[np.ndarray], probs: list[np.ndarray]) -> list[np.ndarray]:
        """Refined (C, H, W) probabilities of each (image, probs) pair, in order."""
        params = self.params
        if self.workers == 0 or len(images) == 1:
            return [dense_crf(image, prob, **params) for image, prob in zip(images, probs, strict=True)]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        pairs = zip(images, probs, strict=True)
        futures = [self._pool.submit(dense_crf, image, prob, **params) for image, prob in pairs]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # a pool does not pickle (DDP spawn, deepcopy)
