"""Pictures of the stages: colour masks, heat maps and panels (report figure, W&B panels, notebook)."""

from __future__ import annotations

import numpy as np
import torch

from epspp.data.classes import voc_palette
from epspp.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def denormalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(3, H, W) normalized tensor -> (H, W, 3) uint8."""
    array = image.detach().float().cpu().numpy().transpose(1, 2, 0) * np.array(std) + np.array(mean)
    return (np.clip(array, 0, 1) * 255).astype(np.uint8)


def colorize(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 in the VOC palette (255 ignore shown white)."""
    mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask
    return voc_palette()[np.asarray(mask, dtype=np.uint8)]


def heatmap(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8, dark blue (0) through red to yellow (1)."""
    values = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else values
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    rgb = np.stack([np.clip(2 * v, 0, 1), np.clip(2 * v - 1, 0, 1), np.clip(0.5 - v, 0, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


def overlay(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB picture over an image."""
    return (image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], scale: int = 1, gap: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) panels into one uint8 picture (white gaps), enlarged by ``scale``."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            top, left = i * (height + gap), j * (width + gap)
            canvas[top: top + height, left: left + width] = panel
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else canvas
