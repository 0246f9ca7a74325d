"""Copy what a study folder measured into the repository's docs, so that every number of the results page
(docs/results.md) can be recomputed.

    python scripts/publish_study.py runs/study docs/study          # after make study
    python scripts/publish_study.py runs/readings docs/study/readings   # after epspp study readings

Copies the study's tables (``*.csv``, ``*.md``, ``*.png``) and, under ``DEST/runs/``, every run's
``scores.json`` (stage 1 + 2: both threshold sweeps, the threshold chosen on val, per-class IoU, IRD's telemetry)
and ``score.json`` (stage 3: val mIoU of the last checkpoint), keeping the study folder's layout
(``runs/<dataset>/<regime>/<method>/<saliency>/seed<S>/scores.json``). Nothing else of a run is copied (no
checkpoints, masks or logs). Each file is written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

TABLES = ("*.csv", "*.md", "*.png")
RUN_FILES = ("scores.json", "score.json")


def publish(study: Path, dest: Path) -> list[Path]:
    """Copy the tables and the runs' score files of ``study`` into ``dest``; the paths written."""
    if not (study / "runs").is_dir():
        raise SystemExit(f"publish_study: {study} has no runs/ folder: is it the --out of an epspp study?")
    sources = [p for pattern in TABLES for p in sorted(study.glob(pattern))]
    sources += [p for name in RUN_FILES for p in sorted((study / "runs").rglob(name))]
    written = []
    for source in sources:
        target = dest / source.relative_to(study)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="the study's --out folder, e.g. runs/study")
    parser.add_argument("dest", type=Path, help="where the files go, e.g. docs/study")
    args = parser.parse_args()
    written = publish(args.study, args.dest)
    print(f"publish_study: {len(written)} files copied from {args.study} to {args.dest}")


if __name__ == "__main__":
    main()
