"""Twenty real photos, their labels and crude saliency maps: the own-data set of issue 32, for timing `epspp run`.

    python scripts/photo_demo_data.py --out data/photo_demo
    epspp run --images data/photo_demo/photos --labels data/photo_demo/labels.csv \
        --saliency data/photo_demo/saliency --predict data/photo_demo/new_photos --out runs/photo_demo

The photos are scikit-image's bundled ones (cameraman, cat, coffee cup, rocket, astronaut, motorcycle; offline,
``pip install scikit-image``): each full, mirrored and cropped, and two side-by-side composites with both labels.
The saliency maps are each pixel's colour contrast to the image border (``tests/fixtures/helpers.py``,
``border_contrast_saliency``): crude on purpose, like a cheap detector's. ``new_photos/`` holds 4 other crops of
the photos, to try ``--predict`` on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures.helpers import write_photo_set  # noqa: E402 - the builder the tests use too


def main(argv: list[str] | None = None) -> int:
    """Write the photo set into a new or empty ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="a new or empty folder")
    parser.add_argument("--count", type=int, default=20, help="photos with labels (20)")
    parser.add_argument("--long-side", type=int, default=400, help="each photo's longer side in px (400)")
    args = parser.parse_args(argv)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        print(
            f"photo_demo_data: error: --out {args.out} exists and is not an empty folder: choose a new one",
            file=sys.stderr,
        )
        return 2
    if args.count < 2 or args.long_side < 16:
        print("photo_demo_data: error: --count must be >= 2 and --long-side >= 16", file=sys.stderr)
        return 2
    paths = write_photo_set(args.out, args.count, args.long_side)
    for key, path in paths.items():
        print(f"{key:10s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
