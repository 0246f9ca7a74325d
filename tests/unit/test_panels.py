"""epspp.panels: the overlay's legend (one swatch per class present, text scaled with the photo), captioned rows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageFont

from epspp.data.classes import voc_palette
from epspp.panels import Pen, Row, labelled_row, legend_of, overlay_with_legend, overview_picture

NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle"]
# VOC palette: 1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), 4 (0, 0, 128), 5 (128, 0, 128): none is a grey, so
# the anti-aliased black text on white never draws them


def _count(picture: np.ndarray, colour: np.ndarray) -> int:
    return int((picture == colour).all(axis=-1).sum())


def _image(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 100, np.uint8)  # grey: its blends are no palette colour either


def test_overlay_has_one_swatch_per_class_present_and_none_for_absent_classes() -> None:
    image = _image(24, 40)  # H 24, W 40: not square
    mask = np.zeros((24, 40), np.uint8)
    mask[2:10, 3:20], mask[12:20, 22:38] = 1, 3
    picture = overlay_with_legend(image, mask, NAMES)
    # the top block is the image with the class colours blended at 0.55 where the mask is not background
    expected = image.copy()
    for c in (1, 3):
        expected[mask == c] = (100 * 0.45 + voc_palette()[c] * 0.55).astype(np.uint8)
    np.testing.assert_array_equal(picture[:24, :40], expected)
    # the legend band below: text 14 px (the floor; max(24, 40) / 30 is less), lines of 14 + 7 = 21 px with
    # 21 // 4 = 5 px above and below; the band is as wide as "aeroplane" needs, so "bird" goes on a second line
    assert picture.shape[0] == 24 + 2 * 21 + 2 * 5 and picture.shape[1] > 40
    band = picture[24:]
    for c in (1, 3):  # a 14x14 swatch: 12x12 of the class colour inside its black outline
        assert _count(band, voc_palette()[c]) == 12 * 12, f"class {c}"
    for c in (2, 4, 5):
        assert _count(band, voc_palette()[c]) == 0, f"class {c} is not in the mask but has a swatch"


def test_legend_text_scales_with_a_large_non_square_photo() -> None:
    image = _image(800, 1200)
    mask = np.zeros((800, 1200), np.uint8)
    mask[100:300, 100:900] = 2
    picture = overlay_with_legend(image, mask, NAMES)
    # text 1200 / 30 = 40 px: a line of 40 + 20 = 60 px, 15 px above and below; the swatch 40 px (38 inside)
    assert picture.shape == (800 + 90, 1200, 3)
    assert _count(picture[800:], voc_palette()[2]) == 38 * 38
    assert _count(picture[800:], voc_palette()[1]) == 0


def test_legend_of_names_classes_and_ignore_without_background() -> None:
    masks = [np.array([[0, 3], [255, 3]], np.uint8), np.array([[1, 9]], np.uint8)]
    legend = legend_of(masks, NAMES)
    assert list(legend) == ["aeroplane", "bird", "class 9", "ignore"]
    assert legend["bird"] == (128, 128, 0) and legend["ignore"] == tuple(voc_palette()[255])
    assert legend_of([np.zeros((2, 2), np.uint8)], NAMES) == {}
    # the last name (5, bottle) and one past the names (6): named and numbered (boundary sweep)
    assert list(legend_of([np.array([[5, 6]], np.uint8)], NAMES)) == ["bottle", "class 6"]


def test_a_mask_without_objects_says_so_in_its_legend() -> None:
    picture = overlay_with_legend(_image(20, 20), np.zeros((20, 20), np.uint8), NAMES)
    assert picture.shape[0] == 20 + 31  # still one legend line ("no object class")
    assert picture.shape[1] > 20  # the entry is wider than the 20-px image: the band widens the picture


def _ruler_pen(pixels_per_char: int) -> Pen:
    """Pen(13) whose text is ``pixels_per_char`` px a character and whose ellipsis is one character."""
    pen = Pen(13)
    pen.width = lambda text: pixels_per_char * len(text)  # type: ignore[method-assign]
    pen.ellipsis = "…"
    return pen


def test_a_text_of_exactly_the_width_fits_whole_and_a_cut_one_with_its_ellipsis() -> None:
    """``fit``: shortened with an ellipsis to fit ``width`` pixels; exactly ``width`` fits (boundary sweep)."""
    pen = _ruler_pen(1)
    assert pen.fit("abcd", 4) == "abcd"
    assert pen.fit("abcde", 4) == "abc…"  # 'abc…' is exactly 4 px
    assert pen.fit("abcde", 3) == "ab…"


def test_a_legend_line_takes_entries_up_to_exactly_its_width() -> None:
    """Entries of swatch 13 + gap 13 // 3 + name 20 = 37 px, 13 px apart and from the edges: two fill exactly
    13 + 37 + 13 + 37 + 13 = 113 px, so a band 113 px wide has one line and 112 px two (boundary sweep)."""
    from epspp.panels import legend_band

    pen = _ruler_pen(10)
    legend = {"ab": (128, 0, 0), "cd": (0, 128, 0)}
    margins = pen.line // 4 * 2
    assert legend_band(legend, 113, pen).shape == (pen.line + margins, 113, 3)
    assert legend_band(legend, 112, pen).shape == (2 * pen.line + margins, 112, 3)


def test_labelled_row_size_arithmetic() -> None:
    # panels 48 wide x 32 tall, shown 64 wide: scale 4/3 -> 64 x 43 (42.67 rounded); text 13 px -> a 19-px caption
    row = Row("img 1", "labels: bird", [_image(32, 48), _image(32, 48), _image(32, 48)])
    picture = labelled_row(row, panel=64, gap=4)
    assert picture.shape == (19 + 43, 3 * 64 + 2 * 4, 3)
    assert (picture[19:, :64] == 100).all() and (picture[19:, 64:68] == 255).all()  # panel, then the white gap
    caption = picture[:19]
    assert (caption.min(axis=-1) < 128).sum() > 20  # the id and labels are written (dark text)
    tall = labelled_row(Row("t", "x", [_image(90, 30)]), panel=64)  # 64 wide would be 192 tall: capped at 96
    assert tall.shape == (19 + 96, 64, 3) and (tall[19:, :32] == 100).all() and (tall[19:, 32:] == 255).all()


def test_overview_picture_stacks_titles_rows_and_legend() -> None:
    rows = [Row(f"id{i}", "labels: none", [np.full((16, 16, 3), 10 * (i + 1), np.uint8)] * 2) for i in range(3)]
    picture = overview_picture(rows, ["image", "mask overlay"], {"bird": (128, 128, 0)}, panel=64, gap=4)
    # 19 (titles) + 3 x (19 caption + 64 panel + 4 gap) + 27 (legend: 19 + 2 x 4)
    assert picture.shape == (19 + 3 * (19 + 64 + 4) + 27, 2 * 64 + 4, 3)
    for i in range(3):  # each row's panels sit below its caption, in order
        top = 19 + i * (19 + 64 + 4) + 19
        assert (picture[top : top + 64, :64] == 10 * (i + 1)).all()
    assert _count(picture[-27:], np.array([128, 128, 0])) == 11 * 11  # a 13-px swatch


def test_without_freetype_the_bitmap_font_is_enlarged(monkeypatch: pytest.MonkeyPatch) -> None:
    bitmap = ImageFont.load_default_imagefont()

    def load_default(size: float | None = None) -> ImageFont.ImageFont:
        if size is not None:
            raise TypeError("Pillow 10.0 has no size argument")
        return bitmap

    monkeypatch.setattr(ImageFont, "load_default", load_default)
    pen = Pen(22)  # twice the bitmap font's 11 px
    assert pen.width("ab") == 2 * int(bitmap.getlength("ab"))
    picture = overlay_with_legend(_image(30, 30), np.full((30, 30), 4, np.uint8), NAMES)
    assert _count(picture[30:], voc_palette()[4]) == 12 * 12
    assert (picture[30:].min(axis=-1) < 100).sum() > 20  # the name is drawn
    row = labelled_row(Row("写真 — a photo with a long name", "labels: aeroplane", [_image(8, 8)]), panel=64)
    assert row.shape == (19 + 64, 64, 3)  # other scripts drawn as "?", the caption cut with "..."


def test_wandb_sample_panels_carry_a_legend_of_their_masks() -> None:
    import torch

    from epspp.callbacks.sample_panels import with_legend

    rows = [[np.zeros((8, 8, 3), np.uint8)] * 3] * 2
    masks = [torch.tensor([[0, 2], [2, 2]]), torch.tensor([[4]])]
    picture = with_legend(rows, masks, NAMES)
    # the grid: 2 x 8 px + a 2-px gap tall, 3 x 8 + 2 x 2 wide; below it the legend (13-px text, swatches 11x11
    # inside) of bicycle and boat, wider than the 28-px grid
    assert (picture[:18, :28] == 0).sum() == 2 * 3 * 8 * 8 * 3
    band = picture[18:]
    for c, count in ((2, 11 * 11), (4, 11 * 11), (1, 0), (3, 0), (5, 0)):
        assert _count(band, voc_palette()[c]) == count, f"class {c}"


def test_caption_names_labels_or_the_mask_classes() -> None:
    from epspp.panels import caption_for

    mask = np.array([[0, 3, 255], [1, 1, 7]], np.uint8)
    assert caption_for(["bird", "boat"], mask, NAMES) == "labels: bird, boat"
    assert caption_for([], mask, NAMES) == "labels: none"
    assert caption_for(None, mask, NAMES) == "in the mask: aeroplane, bird, class 7"
    assert caption_for(None, np.zeros((2, 2), np.uint8), NAMES) == "in the mask: background only"
    assert caption_for(None, np.array([[5, 6]], np.uint8), NAMES) == "in the mask: bottle, class 6"  # boundary sweep


def test_localization_panels_draw_the_ground_truth_only_when_the_batch_has_it() -> None:
    """Stage-1 training batches carry no mask: their rows end at the pseudo-mask; validation rows keep it."""
    import pytorch_lightning as pl
    import torch

    from epspp.callbacks.sample_panels import SamplePanelLogger

    class Explaining(pl.LightningModule):
        def explain(self, images: torch.Tensor, saliency: torch.Tensor, labels: torch.Tensor) -> dict:
            shape = (len(images), *images.shape[-2:])
            return {
                "localization": torch.rand(shape),
                "inconsistent": torch.zeros(shape, dtype=torch.bool),
                "pseudo_mask": torch.full(shape, 2),
            }

    batch = {"image": torch.zeros(2, 3, 6, 10), "saliency": torch.rand(2, 1, 6, 10), "label": torch.ones(2, 5)}
    module = Explaining()
    rows, masks = SamplePanelLogger.panels_and_masks(module, batch)
    assert [len(row) for row in rows] == [5, 5] and len(masks) == 2
    assert SamplePanelLogger.caption(module, with_mask=False).endswith("pseudo-mask")
    rows, masks = SamplePanelLogger.panels_and_masks(module, {**batch, "mask": torch.full((2, 6, 10), 4)})
    assert [len(row) for row in rows] == [6, 6] and [int(m[0, 0]) for m in masks] == [2, 4, 2, 4]
    assert rows[0][5].shape == (6, 10, 3) and (rows[0][5] == voc_palette()[4]).all()
    assert SamplePanelLogger.caption(module).endswith("ground truth")


def test_a_panel_taller_than_its_limit_is_area_averaged_down_and_padded_white() -> None:
    """2 x 4 stripes 0/255 at most 1 px tall: scale 1/2 (not 4/4 = 1 for the width), BOX averages each pair of
    columns to 127.5 (NEAREST would keep 0 or 255); the other 2 columns are white padding."""
    from epspp.panels import fit_width

    stripes = np.zeros((2, 4, 3), np.uint8)
    stripes[:, 1::2] = 255
    fitted = fit_width(stripes, 4, 1)
    assert fitted.shape == (1, 4, 3)
    assert np.isin(fitted[:, :2], [127, 128]).all() and (fitted[:, 2:] == 255).all()
