"""benchmarks/sections.py: `make bench` replaces the sections it generates and keeps the hand-timed ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("sections", REPO / "benchmarks" / "sections.py")
sections = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sections)

PREVIOUS = """# Benchmarks

## Summary of the goals

old summary

## 1. PAMR

old 1

## 8. `make study` (hand-timed)

kept 8
### a sub-heading stays in its section

## 11. mIoU

old 11

## 13. Side by side (hand-timed)

kept 13

## Source changes

old changes
"""


def test_generated_sections_replace_theirs_and_the_others_are_kept_in_order() -> None:
    generated = {11: "## 11. mIoU\n\nnew 11\n", 1: "## 1. PAMR\n\nnew 1\n", 5: "## 5. GPU\n\npending\n"}
    merged = sections.merge_sections(generated, PREVIOUS)
    assert [sections.section_number(s) for s in merged] == [1, 5, 8, 11, 13]
    text = "\n".join(merged)
    assert "new 1" in text and "new 11" in text and "old 1\n" not in text and "old 11" not in text
    assert "kept 8\n### a sub-heading stays in its section\n" in text and "kept 13\n" in text
    assert "old summary" not in text and "old changes" not in text  # unnumbered: run_all writes them anew


def test_no_previous_file_gives_the_generated_sections_and_a_failure_has_no_number() -> None:
    assert sections.merge_sections({2: "## 2. Step\n"}, "") == ["## 2. Step\n"]
    assert sections.section_number("**step failed** (exit 1)") is None
    assert sections.section_number("## 12. GPU check") == 12
