"""Labelled pictures: a mask overlay with a legend of its classes, and rows of panels captioned with an image's
id and labels (the overview of ``epspp render`` and of the mask writer; usable by any report).

Text is drawn with Pillow's scalable default font (FreeType), sized from the picture it labels, so a legend
stays readable on a 48-px test image and on a 4000-px photo alike; without FreeType the bitmap font is enlarged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from epspp.data.classes import voc_palette
from epspp.visualize import colorize, overlay

IGNORE = 255
HEADER_GREY = (232, 232, 232)  # the band of column titles
Colour = tuple[int, int, int]


def text_size_for(height: int, width: int) -> int:
    """Font size (px) for text labelling a picture of this size: 1/30 of its long side, at least 14 px."""
    return max(14, round(max(height, width) / 30))


class Pen:
    """Draws one font size on Pillow images; ``line`` is the height of a line of text with its padding."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.line = size + max(4, size // 2)
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont | None = None
        try:
            font = ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
        except TypeError:  # Pillow 10.0: no size argument
            pass
        self._scaled = not isinstance(font, ImageFont.FreeTypeFont)
        self.font = ImageFont.load_default() if self._scaled else cast(ImageFont.FreeTypeFont, font)
        self._factor = max(1, round(size / 11))  # the bitmap font is about 11 px tall
        self.ellipsis = "..." if self._scaled else "…"  # the bitmap font has Latin-1 glyphs only
        top, bottom = self.font.getbbox("Ag")[1::2]
        self._ink = (bottom - top) * (self._factor if self._scaled else 1)
        self._top = top * (self._factor if self._scaled else 1)

    def _glyphs(self, text: str) -> str:
        """``text`` as the font can draw it (the bitmap font: other characters as ``?``)."""
        return text.encode("latin-1", "replace").decode("latin-1") if self._scaled else text

    def width(self, text: str) -> int:
        """Width in pixels of ``text``."""
        if self._scaled:
            return int(self.font.getlength(self._glyphs(text))) * self._factor
        return int(np.ceil(self.font.getlength(text)))

    def fit(self, text: str, width: int) -> str:
        """``text``, shortened with an ellipsis to fit ``width`` pixels."""
        if self.width(text) <= width:
            return text
        while text and self.width(text + self.ellipsis) > width:
            text = text[:-1]
        return text + self.ellipsis

    def write(self, canvas: Image.Image, x: int, y: int, text: str, fill: str = "black") -> None:
        """Draw ``text`` left-aligned, vertically centred in the line that starts at ``y``."""
        y_text = y + (self.line - self._ink) // 2 - self._top
        if not self._scaled:
            ImageDraw.Draw(canvas).text((x, y_text), text, fill=fill, font=self.font)
            return
        text = self._glyphs(text)
        small = Image.new("L", (max(1, int(self.font.getlength(text))), self.line // self._factor + 2), 0)
        ImageDraw.Draw(small).text((0, 0), text, fill=255, font=self.font)
        big = small.resize((small.width * self._factor, small.height * self._factor), Image.Resampling.NEAREST)
        canvas.paste(Image.new("RGB", big.size, fill), (x, int(y_text)), big)  # Pillow's bbox: ints


def legend_of(masks: Iterable[np.ndarray], names: Sequence[str]) -> dict[str, Colour]:
    """The legend of the classes drawn on ``masks``: {class name: palette colour}, in class order.

    Background (0) is not drawn on an overlay and has no entry; the ignore value (255) is listed as
    ``ignore``; a class id beyond ``names`` as ``class <id>``.
    """
    present: set[int] = set()
    for mask in masks:
        present.update(int(v) for v in np.unique(mask))
    palette = voc_palette()
    return {
        (names[c] if c < len(names) else "ignore" if c == IGNORE else f"class {c}"): cast(
            Colour, tuple(int(v) for v in palette[c])
        )
        for c in sorted(present - {0})
    }


def legend_band(legend: dict[str, Colour], width: int, pen: Pen) -> np.ndarray:
    """A white band with one swatch (the class colour, black outline) and name per entry, wrapped into lines
    of at most ``width`` pixels (wider when one entry alone needs more).  (h, w, 3) uint8."""
    swatch, space = pen.size, pen.size
    entries = [(name, colour, swatch + pen.size // 3 + pen.width(name)) for name, colour in legend.items()]
    width = max([width] + [w + 2 * space for *_, w in entries])
    lines: list[list[tuple[str, Colour, int]]] = [[]]
    used = space
    for entry in entries:
        if lines[-1] and used + entry[2] > width - space:
            lines.append([])
            used = space
        lines[-1].append(entry)
        used += entry[2] + space
    canvas = Image.new("RGB", (width, len(lines) * pen.line + pen.line // 4 * 2), "white")
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        x, y = space, pen.line // 4 + row * pen.line
        for name, colour, entry_width in line:
            top = y + (pen.line - swatch) // 2
            draw.rectangle([x, top, x + swatch - 1, top + swatch - 1], fill=colour, outline="black")
            pen.write(canvas, x + swatch + pen.size // 3, y, name)
            x += entry_width + space
    return np.asarray(canvas)


def blend(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the class colours of ``mask`` (H, W) blended in where it is not background."""
    return np.where((mask > 0)[..., None], overlay(image, colorize(mask), alpha), image)


def overlay_with_legend(image: np.ndarray, mask: np.ndarray, names: Sequence[str], alpha: float = 0.55) -> np.ndarray:
    """The mask overlay of one image with a legend band below it: the classes present, their colours and names.

    The top (H, W) block is ``blend(image, mask, alpha)``; the band's text is ``text_size_for(H, W)`` px
    tall, and the picture is wider than W only when one legend entry needs more room.  (H + band, W', 3) uint8.
    """
    picture = blend(image, mask, alpha)
    legend = legend_of([mask], names) or {"no object class": (255, 255, 255)}
    band = legend_band(legend, picture.shape[1], Pen(text_size_for(*picture.shape[:2])))
    return stack([picture, band])


def stack(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """Pictures one above the other, left-aligned on white (as wide as the widest)."""
    width = max(p.shape[1] for p in pictures)
    canvas = np.full((sum(p.shape[0] for p in pictures), width, 3), 255, np.uint8)
    top = 0
    for picture in pictures:
        canvas[top : top + picture.shape[0], : picture.shape[1]] = picture
        top += picture.shape[0]
    return canvas


def fit_width(picture: np.ndarray, width: int, max_height: int) -> np.ndarray:
    """``picture`` resized (aspect kept, area-averaged) to ``width`` pixels wide, or to ``max_height`` tall when
    that is smaller, then padded white on the right to ``width``."""
    height, old_width = picture.shape[:2]
    scale = min(width / old_width, max_height / height)
    size = (max(1, round(old_width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST
    resized = np.asarray(Image.fromarray(picture).resize(size, resample))
    canvas = np.full((size[1], width, 3), 255, np.uint8)
    canvas[:, : size[0]] = resized
    return canvas


@dataclass(frozen=True)
class Row:
    """One row of an overview: the image's id, its caption text (labels) and its panels, (H, W, 3) uint8 each."""

    image_id: str
    caption: str
    panels: Sequence[np.ndarray]


def caption_for(labels: Sequence[str] | None, mask: np.ndarray, names: Sequence[str]) -> str:
    """A row's caption: ``labels: a, b`` (the image's labels), or ``in the mask: a, b`` (the classes of ``mask``)
    when its labels are unknown (``labels`` None, e.g. a photo outside any dataset)."""
    if labels is not None:
        return "labels: " + (", ".join(labels) or "none")
    found = [names[c] if c < len(names) else f"class {c}" for c in np.unique(mask) if 0 < c < IGNORE]
    return "in the mask: " + (", ".join(found) or "background only")


def panel_pen(panel: int) -> Pen:
    """The pen of an overview whose panels are ``panel`` px wide: 1/16 of it, at least 13 px."""
    return Pen(max(13, round(panel / 16)))


def labelled_row(row: Row, panel: int = 256, gap: int = 4) -> np.ndarray:
    """One captioned row: a line ``<id> · <caption>`` above the panels, each resized to ``panel`` px wide (tall
    images to at most 1.5 ``panel``), ``gap`` px apart.  Width ``n * panel + (n - 1) * gap``; height one text line
    (``panel_pen(panel).line``) plus the panels' height.  (h, w, 3) uint8."""
    pen = panel_pen(panel)
    width = len(row.panels) * panel + (len(row.panels) - 1) * gap
    fitted = [fit_width(p, panel, round(1.5 * panel)) for p in row.panels]
    canvas = np.full((pen.line + max(p.shape[0] for p in fitted), width, 3), 255, np.uint8)
    for index, picture in enumerate(fitted):
        left = index * (panel + gap)
        canvas[pen.line : pen.line + picture.shape[0], left : left + panel] = picture
    image = Image.fromarray(canvas)
    pen.write(image, 2, 0, pen.fit(f"{row.image_id}  ·  {row.caption}", width - 4))
    return np.asarray(image)


def overview_picture(
    rows: Sequence[Row], titles: Sequence[str], legend: dict[str, Colour], panel: int = 256, gap: int = 4
) -> np.ndarray:
    """Column titles (on a grey band), then ``labelled_row`` of every row in order (``gap`` px of white after each),
    then a legend band.  Width ``n * panel + (n - 1) * gap`` (n columns; wider only for a legend entry that needs
    it)."""
    pen = panel_pen(panel)
    width = len(titles) * panel + (len(titles) - 1) * gap
    header = Image.new("RGB", (width, pen.line), HEADER_GREY)
    for index, title in enumerate(titles):
        pen.write(header, index * (panel + gap) + 2, 0, pen.fit(title, panel - 4))
    parts = [np.asarray(header)]
    for row in rows:
        parts += [labelled_row(row, panel, gap), np.full((gap, width, 3), 255, np.uint8)]
    parts.append(legend_band(legend or {"no object class": (255, 255, 255)}, width, pen))
    return stack(parts)
