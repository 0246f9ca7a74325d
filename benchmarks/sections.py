"""The numbered ``## N. title`` sections of BENCHMARKS.md: what ``run_all.py`` writes and what it keeps.

``run_all.py`` generates some sections; the others (hand-timed: ``make study``, the demo, ``epspp run``, the
GPU check, the official procedure side by side, ...) are written by hand from runs of their own scripts. A run
replaces the sections it generates and keeps every other numbered section of the file it overwrites, in number
order.
"""

from __future__ import annotations

import re

HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def numbered_sections(text: str) -> dict[int, str]:
    """``{N: section text}`` of every ``## N. ...`` section of ``text``, each up to the next ``## `` heading."""
    starts = [m for m in re.finditer(r"^## ", text, re.MULTILINE)]
    sections = {}
    for index, start in enumerate(starts):
        match = HEADING.match(text, start.start())
        if match:
            end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
            sections[int(match.group(1))] = text[start.start() : end].rstrip() + "\n"
    return sections


def merge_sections(generated: dict[int, str], previous: str) -> list[str]:
    """The generated sections and the previous file's other numbered sections, in number order."""
    merged = {**numbered_sections(previous), **generated}
    return [merged[n].rstrip() + "\n" for n in sorted(merged)]


def section_number(markdown: str) -> int | None:
    """The N of a benchmark's markdown that starts with ``## N. ``; None for any other (a failure's note)."""
    match = HEADING.match(markdown.lstrip())
    return int(match.group(1)) if match else None
