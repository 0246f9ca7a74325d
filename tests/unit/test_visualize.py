"""Pictures of the stages: colour masks, heat maps, blends, panel grids and their annotation, by hand."""

from __future__ import annotations

import numpy as np
import torch

from epspp.visualize import annotate, colorize, denormalize, fit_panel, grid, heatmap, overlay


def test_denormalize_undoes_the_imagenet_normalization_and_clips() -> None:
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.5, 1.0)
    image = torch.tensor([[[0.0, 1.0]], [[-0.5, 9.0]], [[0.2, -1.0]]])  # (3, 1, 2)
    # x * std + mean: R 0.5, 1.0; G 0.0, 4.75 -> 1; B 0.2, -1 -> 0; then * 255, truncated
    assert denormalize(image, mean, std).tolist() == [[[127, 0, 51], [255, 255, 0]]]


def test_colorize_in_the_voc_palette_with_ignore_white_ish() -> None:
    mask = torch.tensor([[0, 1], [15, 255]])
    assert colorize(mask).tolist() == [[[0, 0, 0], [128, 0, 0]], [[192, 128, 128], [224, 224, 192]]]
    assert colorize(mask.numpy()).tolist() == colorize(mask).tolist()


def test_heatmap_runs_from_dark_blue_through_red_to_yellow() -> None:
    values = np.array([[0.0, 0.25, 0.5, 1.0, 2.0]])
    # r = 2v, g = 2v - 1, b = 0.5 - v, each clipped to [0, 1], * 255 truncated
    assert heatmap(values).tolist() == [[[0, 0, 127], [127, 0, 63], [255, 0, 0], [255, 255, 0], [255, 255, 0]]]
    assert heatmap(torch.tensor(values)).tolist() == heatmap(values).tolist()


def test_overlay_blends_with_alpha() -> None:
    image, colour = np.full((1, 1, 3), 100, np.uint8), np.full((1, 1, 3), 200, np.uint8)
    assert overlay(image, colour).tolist() == [[[150, 150, 150]]]
    assert overlay(image, colour, alpha=0.25).tolist() == [[[125, 125, 125]]]


def test_grid_tiles_panels_with_white_gaps_and_scales() -> None:
    black, grey = np.zeros((2, 3, 3), np.uint8), np.full((2, 3, 3), 9, np.uint8)
    canvas = grid([[black, grey], [grey]], gap=1)
    assert canvas.shape == (2 * 2 + 1, 3 * 2 + 1, 3)
    assert (canvas[:2, :3] == 0).all() and (canvas[:2, 4:] == 9).all() and (canvas[3:, :3] == 9).all()
    assert (canvas[2] == 255).all() and (canvas[:, 3] == 255).all() and (canvas[3:, 4:] == 255).all()  # gaps, hole
    assert grid([[black]], scale=3).shape == (6, 9, 3)


def test_fit_panel_keeps_the_aspect_and_pads_white() -> None:
    picture = np.zeros((2, 4, 3), np.uint8)
    picture[:, 2:] = 50
    panel = fit_panel(picture, 8)  # scale 2: 4 x 8, nearest neighbour
    assert panel.shape == (8, 8, 3)
    assert (panel[:4, :4] == 0).all() and (panel[:4, 4:] == 50).all() and (panel[4:] == 255).all()


def test_annotate_adds_titles_above_and_a_legend_below() -> None:
    picture = np.zeros((20, 230, 3), np.uint8)
    out = annotate(picture, ["image", "mask"], 100, {"cat": (64, 0, 0), "dog": (64, 0, 128), "cow": (64, 128, 0)})
    # 14-px title line + 4, the picture, then 2 legend rows (230 // 110 = 2 per row) of 14 px + 6
    assert out.shape == (14 + 4 + 20 + 2 * 14 + 6, 230, 3)
    assert (out[18:38] == 0).all()  # the picture, untouched
    assert (out[:18] < 255).any() and (out[38:] < 255).any()  # titles and legend drawn
    assert [64, 0, 128] in out[38:].reshape(-1, 3).tolist()  # the dog's swatch
