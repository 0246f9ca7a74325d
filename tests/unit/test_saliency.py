"""`epspp saliency`: rembg's map of each image at its size, resume, provenance, and its one-line errors.

Offline: the detector is a tiny ONNX model with U²-Net's signature written by the test (``saliency_model``),
whose map is one input channel, so every written value is computed by hand from rembg's documented steps.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if importlib.util.find_spec("rembg") is None:  # not imported here: epspp.saliency imports it without numba's
    pytest.skip("needs the saliency extra (rembg)", allow_module_level=True)  # compile of pymatting
pytest.importorskip("onnx")
pytest.importorskip("skimage")

from fixtures.saliency_model import FAMILIES, expected_u2net_map, write_photos, write_u2net_like_onnx  # noqa: E402

from epspp.cli.saliency import saliency_main
from epspp.saliency import SaliencyError, write_saliency_maps  # noqa: E402


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three small non-square photos (JPEG, PNG, grey BMP) and a file that is not an image."""
    folder = tmp_path / "photos"
    write_photos(folder)
    (folder / "notes.txt").write_text("not an image: ignored, as epspp prepare folder ignores it")
    return folder


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_u2net_like_onnx(tmp_path / "u2net_like.onnx", channel=1)


def _maps(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_each_map_is_the_models_first_output_at_the_images_size(photos: Path, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "saliency"
    result = write_saliency_maps(photos, out, model_path=model, log=lambda line: None)
    assert (result["count"], result["written"], result["skipped"]) == (3, 3, 0)
    maps = _maps(out)
    assert sorted(maps) == ["cameraman", "cat", "coffee cup"]  # ids as prepare folder makes them; notes.txt skipped
    for image_id, path in {p.stem: p for p in photos.iterdir() if p.suffix != ".txt"}.items():
        with Image.open(out / f"{image_id}.png") as written, Image.open(path) as image:
            assert written.mode == "L" and written.size == image.size  # (45, 30), (36, 24), (28, 40)
        np.testing.assert_array_equal(maps[image_id], expected_u2net_map(path, channel=1))
    assert sorted(p.name for p in out.iterdir()) == [
        "cameraman.png",
        "cat.png",
        "coffee cup.png",
        "epspp_files.json",
        "saliency.json",
    ]  # no temporary file left


@pytest.mark.parametrize("family", ["u2net_custom", "isnet-general-use", "birefnet-general"])
def test_model_path_gets_the_preprocessing_of_its_family(family: str, photos: Path, tmp_path: Path) -> None:
    """--model NAME --model-path FILE: the file runs with NAME's input size, mean and std (and BiRefNet's sigmoid)."""
    model = write_u2net_like_onnx(tmp_path / f"{family}.onnx", channel=2, size=FAMILIES[family][0])
    write_saliency_maps(photos, tmp_path / "saliency", model=family, model_path=model, log=lambda line: None)
    for path in (p for p in photos.iterdir() if p.suffix != ".txt"):
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "saliency" / f"{path.stem}.png")),
            expected_u2net_map(path, channel=2, family=family),
        )


def test_rerun_rewrites_nothing_and_redoes_a_missing_or_broken_map(photos: Path, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "saliency"
    write_saliency_maps(photos, out, model_path=model, log=lambda line: None)
    before, maps = _mtimes(out), _maps(out)
    again = write_saliency_maps(photos, out, model_path=model, log=lambda line: None)
    assert (again["written"], again["skipped"], again["count"]) == (0, 3, 3)
    assert {k: v for k, v in _mtimes(out).items() if k.endswith(".png")} == {
        k: v for k, v in before.items() if k.endswith(".png")
    }
    (out / "cat.png").unlink()
    (out / "cameraman.png").write_bytes((out / "cameraman.png").read_bytes()[:40])  # truncated: does not decode
    third = write_saliency_maps(photos, out, model_path=model, log=lambda line: None)
    assert (third["written"], third["skipped"]) == (2, 1)
    assert (out / "coffee cup.png").stat().st_mtime_ns == before["coffee cup.png"]
    for image_id, values in _maps(out).items():
        np.testing.assert_array_equal(values, maps[image_id])


def test_provenance_names_the_model_and_its_file(photos: Path, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "saliency"
    write_saliency_maps(photos, out, model_path=model, log=lambda line: None)
    record = json.loads((out / "saliency.json").read_text())
    assert record == {
        "command": "epspp saliency",
        "model": "u2net",
        "model_file": str(model.resolve()),
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "rembg": metadata.version("rembg"),
        "onnxruntime": metadata.version("onnxruntime"),
        "images": str(photos.resolve()),
        "count": 3,
        "constant": [],
    }
    before = _mtimes(out)
    other = write_u2net_like_onnx(tmp_path / "other.onnx", channel=0)  # another file: another hash
    new_hash = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(SaliencyError, match=f"sha256 {record['sha256']} -> {new_hash}"):
        write_saliency_maps(photos, out, model_path=other)
    with pytest.raises(SaliencyError, match="model u2net -> u2netp"):
        write_saliency_maps(photos, out, model="u2netp", model_path=model)
    elsewhere = tmp_path / "more photos"
    write_photos(elsewhere)
    with pytest.raises(SaliencyError, match="images .*photos -> .*more photos"):
        write_saliency_maps(elsewhere, out, model_path=model)
    assert _mtimes(out) == before  # refused before writing anything
    moved = model.rename(tmp_path / "moved.onnx")  # the same file elsewhere: resumes, and records the new path
    assert write_saliency_maps(photos, out, model_path=moved, log=lambda line: None)["model_file"] == str(
        moved.resolve()
    )


def test_cached_model_file_is_used_without_fetching(
    photos: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pooch

    home = tmp_path / "rembg_home"
    (home / "models" / "u2net").mkdir(parents=True)
    cached = model.rename(home / "models" / "u2net" / "u2net.onnx")  # where rembg keeps its download of u2net
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setattr(pooch, "retrieve", lambda *args, **kwargs: pytest.fail("fetched although cached"))
    result = write_saliency_maps(photos, tmp_path / "saliency", log=lambda line: None)
    assert (result["model_file"], result["written"]) == (str(cached.resolve()), 3)


def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert saliency_main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("epspp saliency: error: "), captured.err
    return lines[0]


def test_offline_without_model_path_names_the_flag(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import pooch
    import requests

    def offline(*args: object, **kwargs: object) -> None:
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='github.com', port=443): Max retries\nexceeded (Failed to resolve 'github.com')"
        )

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "empty_home"))  # no cached file
    monkeypatch.setattr(pooch, "retrieve", offline)
    out = tmp_path / "saliency"
    line = _one_line_error(capsys, ["--images", photos, "--out", out])
    assert "cannot fetch the model file of --model u2net" in line and "--model-path FILE" in line
    assert "ConnectionError" in line and not out.exists()


def test_one_line_errors(
    photos: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "saliency"
    assert (
        "--out" in _one_line_error(capsys, ["--images", photos, "--out", photos / "maps", "--model-path", model])
        and not (photos / "maps").exists()
    )
    assert "no such file" in _one_line_error(
        capsys, ["--images", photos, "--out", out, "--model-path", tmp_path / "missing.onnx"]
    )
    assert "--model-path" in _one_line_error(capsys, ["--images", photos, "--out", out, "--model", "u2net_custom"])
    text = tmp_path / "not_a_model.onnx"
    text.write_text("not onnx")
    assert f"cannot load the model file {text}" in _one_line_error(
        capsys, ["--images", photos, "--out", out, "--model-path", text]
    )
    monkeypatch.setitem(sys.modules, "rembg.sessions", None)  # as without the saliency extra
    assert "pip install 'epspp[saliency]'" in _one_line_error(capsys, ["--images", photos, "--out", out])
    monkeypatch.undo()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.png").write_bytes(b"a file of the user's")
    assert "did not write" in _one_line_error(capsys, ["--images", photos, "--out", foreign, "--model-path", model])
    assert (foreign / "mine.png").read_bytes() == b"a file of the user's"


def test_an_image_that_does_not_decode_is_named(
    photos: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (photos / "broken.jpg").write_text("a text file named like an image")
    line = _one_line_error(capsys, ["--images", photos, "--out", tmp_path / "saliency", "--model-path", model])
    assert f"cannot read image {photos / 'broken.jpg'}" in line


def test_a_model_of_another_signature_is_named(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "wrong",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    model = tmp_path / "wrong.onnx"
    model.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()
    )
    line = _one_line_error(capsys, ["--images", photos, "--out", tmp_path / "saliency", "--model-path", model])
    assert "the u2net model failed on image" in line and "is the model file a u2net model?" in line


def test_a_constant_map_is_written_as_zeros_and_named(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = tmp_path / "flat"
    images.mkdir()
    Image.new("RGB", (20, 12), (90, 120, 30)).save(images / "flat.png")
    out = tmp_path / "saliency"
    result = write_saliency_maps(images, out, model_path=model, log=lambda line: None)
    assert result["constant"] == ["flat"] and json.loads((out / "saliency.json").read_text())["constant"] == ["flat"]
    np.testing.assert_array_equal(_maps(out)["flat"], np.zeros((12, 20), np.uint8))
    assert "flat.png is constant" in capsys.readouterr().err
    Image.new("RGB", (8, 8), (0, 0, 0)).save(images / "another.png")  # a rerun keeps the earlier run's note
    assert write_saliency_maps(images, out, model_path=model, log=lambda line: None)["constant"] == ["another", "flat"]
    (out / "flat.png").unlink()
    Image.fromarray(np.arange(20 * 12 * 3, dtype=np.uint8).reshape(12, 20, 3)).save(images / "flat.png")
    assert write_saliency_maps(images, out, model_path=model, log=lambda line: None)["constant"] == ["another"]


def test_progress_lines_and_the_final_line(photos: Path, model: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "saliency"
    write_saliency_maps(photos, out, model_path=model, progress_every=2, log=lines.append)
    assert lines[0] == f"[epspp saliency] 3 of 3 images to do (0 already there), model u2net ({model})"
    assert [line.split(",")[0] for line in lines[1:-1]] == [f"[epspp saliency] {n}/3 images" for n in (2, 3)]
    assert all(" images/s, ETA " in line for line in lines[1:-1])
    assert lines[-1].startswith(f"[epspp saliency] 3 saliency maps in {out} (3 written, 0 already there)")
    os.remove(out / "cat.png")
    lines.clear()
    write_saliency_maps(photos, out, model_path=model, progress_every=2, log=lines.append)
    assert lines[1].startswith("[epspp saliency] 3/3 images") and "(1 written, 2 already there)" in lines[-1]
    lines.clear()
    write_saliency_maps(photos, out, model_path=model, progress_every=2, log=lines.append)
    assert lines == [
        f"[epspp saliency] 3 saliency maps in {out} (0 written, 3 already there); model u2net, "
        f"provenance {out / 'saliency.json'}"
    ]  # nothing to do: no model is loaded


def test_a_progress_line_comes_at_least_every_30_seconds(
    photos: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import epspp.saliency

    monkeypatch.setattr(epspp.saliency, "PROGRESS_SECONDS", 0.0)  # every image takes longer than this
    lines: list[str] = []
    write_saliency_maps(photos, tmp_path / "saliency", model_path=model, progress_every=100, log=lines.append)
    assert [line.split(",")[0] for line in lines[1:-1]] == [f"[epspp saliency] {n}/3 images" for n in (1, 2, 3)]


def test_the_image_folder_the_model_and_an_earlier_record_are_refused_in_one_line(tmp_path: Path) -> None:
    from epspp.saliency import _check_earlier, _done, _list_images, _version

    with pytest.raises(SaliencyError) as error:
        _list_images(tmp_path / "none")
    assert str(error.value) == f"--images {tmp_path / 'none'}: no such folder"
    (tmp_path / "notes.txt").write_text("no image")
    with pytest.raises(SaliencyError, match=r"^--images .*notes\.txt: no such folder$"):  # a file
        _list_images(tmp_path / "notes.txt")
    with pytest.raises(SaliencyError, match=rf"^--images {tmp_path} holds no image \(looked for .*\.png"):
        _list_images(tmp_path)
    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "a.png")
    assert _list_images(tmp_path) == {"a": tmp_path / "a.png"}
    with pytest.raises(SaliencyError, match=r"^--model 'u2' is not a detector epspp knows: choose one of u2net"):
        write_saliency_maps(tmp_path, tmp_path.parent / "out_u2", model="u2")
    assert not (tmp_path.parent / "out_u2").exists()
    out = tmp_path / "out"
    out.mkdir()
    record = {"model": "u2net", "sha256": "ab", "images": "/x"}
    _check_earlier(out, record)  # no record: a new folder
    (out / "saliency.json").write_text('{"model": "u2net"}')  # no sha256
    with pytest.raises(SaliencyError, match=rf"^cannot read {out / 'saliency.json'} \(.*\): choose another --out$"):
        _check_earlier(out, record)
    (out / "saliency.json").write_text(json.dumps(record))
    _check_earlier(out, record)  # the same maker: resumed
    assert _version("no-such-package-of-epspp") is None
    assert not _done(out / "a.png", tmp_path / "a.png")  # no map
    Image.fromarray(np.zeros((3, 5), np.uint8)).save(out / "a.png")
    assert _done(out / "a.png", tmp_path / "a.png")  # grey, 5x3 like its image
    Image.fromarray(np.zeros((5, 3), np.uint8)).save(out / "a.png")
    assert not _done(out / "a.png", tmp_path / "a.png")  # 3x5: transposed
    (out / "a.png").write_bytes(b"\x89PNG truncated")
    assert not _done(out / "a.png", tmp_path / "a.png")


@pytest.mark.parametrize(("key", "other"), [("model", "isnet-general-use"), ("sha256", "cd"), ("images", "/y")])
def test_an_earlier_record_of_another_model_file_or_images_is_refused(tmp_path: Path, key: str, other: str) -> None:
    """Each of the three keys alone is enough to refuse, and the message names it with both values."""
    from epspp.saliency import _check_earlier

    record = {"model": "u2net", "sha256": "ab", "images": "/x", "count": 3}
    (tmp_path / "saliency.json").write_text(json.dumps({**record, key: other, "count": 1}))  # count: not a maker
    with pytest.raises(SaliencyError) as error:
        _check_earlier(tmp_path, record)
    assert str(error.value) == (
        f"--out {tmp_path} holds saliency maps made otherwise ({key} {other} -> {record[key]}): resuming would mix "
        "two detectors' maps; choose another --out"
    )


def test_a_colour_map_at_the_images_size_is_redone(tmp_path: Path) -> None:
    from epspp.saliency import _done

    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "a.png")  # RGB, 5x3 like its image
    assert not _done(tmp_path / "a.png", tmp_path / "a.jpg")
    Image.fromarray(np.zeros((3, 5), np.uint8)).save(tmp_path / "a.png")
    assert _done(tmp_path / "a.png", tmp_path / "a.jpg")
