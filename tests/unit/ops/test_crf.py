"""Dense CRF (epspp.ops.crf): a boundary a few pixels off moves onto the colour edge; workers give the same
result as the calling process; a missing pydensecrf2 is a one-line error saying what to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from epspp.errors import ConfigError
from epspp.ops.crf import DenseCRF, crf_refine_scores, dense_crf, to_uint8_rgb

pytest.importorskip("pydensecrf.densecrf")

EDGE, OFF = 20, 5  # the colour edge is at column 20; the predicted boundary at column 25


def edge_case(height: int = 30, width: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A red | blue picture and soft 2-class probabilities whose boundary is OFF pixels right of the edge."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :EDGE] = (200, 30, 30)
    image[:, EDGE:] = (30, 30, 200)
    probs = np.empty((2, height, width), np.float32)
    probs[0] = np.where(np.arange(width) < EDGE + OFF, 0.65, 0.35)[None]
    probs[1] = 1 - probs[0]
    return image, probs


def test_boundary_moves_onto_the_colour_edge() -> None:
    image, probs = edge_case()
    before = probs.argmax(0)
    assert (before[:, EDGE : EDGE + OFF] == 0).all()  # the 5 columns right of the edge are wrong before
    refined = dense_crf(image, probs)
    assert refined.shape == probs.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-4)
    labels = refined.argmax(0)
    assert (labels[:, :EDGE] == 0).all() and (labels[:, EDGE:] == 1).all()


def test_workers_give_the_calling_process_result() -> None:
    pairs = [edge_case(), edge_case(26, 40)]
    crf = DenseCRF(workers=2)
    try:
        pooled = crf([p[0] for p in pairs], [p[1] for p in pairs])
    finally:
        crf.close()
    for (image, probs), result in zip(pairs, pooled, strict=True):
        np.testing.assert_allclose(result, dense_crf(image, probs), atol=1e-6)


def test_to_uint8_rgb_inverts_the_normalization() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalized = torch.from_numpy(((rgb / 255 - mean) / std).transpose(0, 3, 1, 2)).float()
    np.testing.assert_array_equal(to_uint8_rgb(normalized), rgb)


def test_missing_solver_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # import fails as when not installed
    with pytest.raises(ConfigError, match=r"pip install 'epspp\[crf\]'"):
        DenseCRF()


def test_pseudo_mask_refinement_runs_on_background_and_labelled_classes() -> None:
    """refine: crf -- only the background and the image's labelled classes enter the CRF; the others stay 0."""
    image, probs = edge_case()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    images = torch.from_numpy(((image / 255 - mean) / std).transpose(2, 0, 1))[None].float()
    scores = torch.zeros(1, 4, *probs.shape[1:])  # background + 3 classes; the image is labelled with class 2
    scores[0, 0], scores[0, 2] = torch.from_numpy(probs[0]), torch.from_numpy(probs[1])
    scores[0, 1] = 0.3  # an unlabelled class never appears, whatever its score
    refined = crf_refine_scores(images, scores, torch.tensor([[0.0, 1.0, 0.0]]))
    expected = dense_crf(image, probs)
    torch.testing.assert_close(refined[0, [0, 2]], torch.from_numpy(expected))
    assert float(refined[0, [1, 3]].abs().max()) == 0.0
    assert (refined.argmax(1)[0, :, EDGE:] == 2).all()


@pytest.mark.parametrize(
    "params",
    [{}, {"iterations": 5, "pos_w": 2.0, "pos_xy_std": 4.0, "bi_w": 6.0, "bi_xy_std": 20.0, "bi_rgb_std": 9.0}],
)
def test_each_kernel_gets_its_own_parameters(params: dict) -> None:
    """dense_crf equals pydensecrf called as deeplab-pytorch's libs/utils/crf.py calls it, on a random picture whose
    result depends on every parameter (swapping a Gaussian kernel's sxy and compat moves many argmax pixels)."""
    import pydensecrf.densecrf as dcrf

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (24, 32, 3)).astype(np.uint8)
    image[:, 16:] //= 3
    probs = rng.dirichlet(np.ones(3), size=(24, 32)).transpose(2, 0, 1).astype(np.float32)
    p = {"iterations": 10, "pos_w": 3.0, "pos_xy_std": 1.0, "bi_w": 4.0, "bi_xy_std": 67.0, "bi_rgb_std": 3.0} | params
    crf = dcrf.DenseCRF2D(32, 24, 3)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(probs, 1e-5, 1.0)).reshape(3, -1)))
    crf.addPairwiseGaussian(sxy=p["pos_xy_std"], compat=p["pos_w"])
    crf.addPairwiseBilateral(
        sxy=p["bi_xy_std"], srgb=p["bi_rgb_std"], rgbim=np.ascontiguousarray(image), compat=p["bi_w"]
    )
    expected = np.asarray(crf.inference(p["iterations"]), np.float32).reshape(3, 24, 32)
    np.testing.assert_allclose(dense_crf(image, probs, **params), expected, atol=1e-6)


# ------------------------------------------- variation pass (issue 34 item 6)
def test_workers_must_not_be_negative_and_a_single_image_runs_in_this_process() -> None:
    with pytest.raises(ConfigError, match="crf_workers must be >= 0, got -1"):
        DenseCRF(workers=-1)
    crf = DenseCRF(workers=2)
    image, probs = edge_case()
    try:
        [result] = crf([image], [probs])
        assert crf._pool is None  # no process pool for one image
    finally:
        crf.close()
    np.testing.assert_allclose(result, dense_crf(image, probs), atol=1e-6)


def test_the_crfs_parameters_reach_every_call_and_a_copy_leaves_its_pool_behind() -> None:
    import pickle

    image, probs = edge_case()
    crf = DenseCRF(params={"iterations": 1, "bi_w": 10.0})
    [result] = crf([image], [probs])
    np.testing.assert_allclose(result, dense_crf(image, probs, iterations=1, bi_w=10.0), atol=1e-6)
    assert not np.allclose(result, dense_crf(image, probs), atol=1e-3)
    crf._pool = object()  # type: ignore[assignment]  # a pool does not pickle: the copy gets none
    copy = pickle.loads(pickle.dumps(crf))
    assert copy._pool is None and copy.params == {"iterations": 1, "bi_w": 10.0} and crf._pool is not None


def test_pseudo_mask_refinement_takes_each_images_own_labels_and_the_crfs_parameters() -> None:
    """Two images labelled with different classes (class 2, class 1): each keeps the background and its own class;
    the keyword parameters reach ``dense_crf``."""
    image, probs = edge_case()
    mirrored = np.ascontiguousarray(image[:, ::-1])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    images = torch.from_numpy(((np.stack([image, mirrored]) / 255 - mean) / std).transpose(0, 3, 1, 2)).float()
    scores = torch.zeros(2, 4, *probs.shape[1:])
    scores[0, 0], scores[0, 2] = torch.from_numpy(probs[0]), torch.from_numpy(probs[1])
    scores[1, 0], scores[1, 1] = torch.from_numpy(probs[0][:, ::-1].copy()), torch.from_numpy(probs[1][:, ::-1].copy())
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    refined = crf_refine_scores(images, scores, labels, iterations=2)
    first = dense_crf(image, probs, iterations=2)
    torch.testing.assert_close(refined[0, [0, 2]], torch.from_numpy(first))
    torch.testing.assert_close(refined[1, [0, 1]], torch.from_numpy(dense_crf(mirrored, scores[1, [0, 1]].numpy(), 2)))
    assert float(refined[0, [1, 3]].abs().max()) == 0.0 and float(refined[1, [2, 3]].abs().max()) == 0.0
    assert not np.allclose(first, dense_crf(image, probs), atol=1e-4)  # 2 iterations are not the default 10


@pytest.mark.parametrize(
    ("image", "probs", "message"),
    [
        (np.zeros((6, 5, 3), np.float32), np.ones((2, 6, 5), np.float32), "image must be"),
        (np.zeros((6, 5, 4), np.uint8), np.ones((2, 6, 5), np.float32), "image must be"),
        (
            np.zeros((6, 5, 3), np.uint8),
            np.ones((2, 5, 6), np.float32),
            r"probs must be \(C, H, W\) with \(H, W\) = \(6, 5\)",
        ),
        (np.zeros((6, 5, 3), np.uint8), np.ones((6, 5), np.float32), "probs must be"),
    ],
)
def test_dense_crf_refuses_inputs_of_another_type_or_shape(image: np.ndarray, probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dense_crf(image, probs)


def test_to_uint8_rgb_uses_the_mean_and_std_it_is_given() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (1, 3, 4, 3)).astype(np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalized = torch.from_numpy(((rgb / 255 - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)).float()
    np.testing.assert_array_equal(to_uint8_rgb(normalized, mean, std), rgb)
