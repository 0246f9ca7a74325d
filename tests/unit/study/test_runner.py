"""The study runner's context: a labelled split added to a user's root is named for the study."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_labelled_split_added_to_a_users_root_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from epspp.study.runner import Context, labeled_split

    root = tmp_path / "mine"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"img{i}\n" for i in range(10)))
    assert not Context(tmp_path / "study", root, tmp_path, [], {}).owns_root
    assert Context(tmp_path, root, tmp_path, [], {}).owns_root
    assert labeled_split(root, 0.2, own_root=False) == "labeled_study_0.2"
    written = (root / "ImageSets" / "Segmentation" / "labeled_study_0.2.txt").read_text().split()
    assert len(written) == 2 and set(written) <= {f"img{i}" for i in range(10)}
    assert "note: adding the labelled split" in capsys.readouterr().out
    labeled_split(root, 0.2, own_root=False)  # there already: no second note
    assert capsys.readouterr().out == ""
