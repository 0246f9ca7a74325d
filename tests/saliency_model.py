"""Offline stand-ins for ``epspp saliency``: a tiny ONNX model with U²-Net's signature and small real photos.

Import with ``from saliency_model import ...`` (``tests/`` is on ``sys.path`` through its conftest). Needs the
``dev`` and ``saliency`` extras (onnx, scikit-image, rembg, onnxruntime).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

U2NET_SIZE = 320
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: rembg's preprocessing per detector family (its sessions' ``predict``): input size, mean, std, sigmoid on d0
FAMILIES = {"u2net": (320, *IMAGENET, False), "u2net_custom": (320, *IMAGENET, False),
            "isnet-general-use": (1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), False),
            "birefnet-general": (1024, *IMAGENET, True)}
#: (file name, scikit-image photo, size (W, H)): non-square, an RGB JPEG, an RGB PNG and a grey BMP
PHOTOS = (("cat.jpg", "chelsea", (45, 30)), ("coffee cup.png", "coffee", (36, 24)),
          ("cameraman.bmp", "camera", (28, 40)))


def write_u2net_like_onnx(path: Path, channel: int = 1, size: int = U2NET_SIZE) -> Path:
    """Write an ONNX model with U²-Net's signature (``input.1`` 1x3x320x320 float -> seven 1x1x320x320 maps;
    ``size`` 1024 for ISNet and BiRefNet) whose first output (U²-Net's fused map d0) is input channel ``channel``
    unchanged; d1..d6 are the negated channel (rembg reads only d0: a map read from them would be inverted)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    shape = [1, 3, size, size]
    bounds = {"starts": [channel], "ends": [channel + 1], "axes": [1]}
    initializers = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in bounds.items()]
    nodes = [helper.make_node("Slice", ["input.1", "starts", "ends", "axes"], ["d0"]),
             helper.make_node("Neg", ["d0"], ["negated"]),
             *(helper.make_node("Identity", ["negated"], [f"d{i}"]) for i in range(1, 7))]
    outputs = [helper.make_tensor_value_info(f"d{i}", TensorProto.FLOAT, [1, 1, size, size])
               for i in range(7)]
    graph = helper.make_graph(nodes, "u2net_like", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT,
                                                                                  shape)], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def write_photos(folder: Path) -> dict[str, Path]:
    """Small real photos of scikit-image (see ``PHOTOS``) in ``folder``, by id (file name without extension)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, photo, size in PHOTOS:
        image = Image.fromarray(getattr(data, photo)())
        path = folder / name
        image.resize(size, Image.Resampling.BILINEAR).save(path)
        written[Path(name).stem] = path
    return written


def expected_u2net_map(image_path: Path, channel: int = 1, family: str = "u2net") -> np.ndarray:
    """The map ``epspp saliency --model FAMILY`` writes for ``image_path`` with ``write_u2net_like_onnx``'s model,
    by rembg's documented steps: RGB, LANCZOS to the input size, / the largest value, (x - mean) / std, as
    float32 (the model returns channel ``channel`` as it is; BiRefNet: its sigmoid), min-max to [0, 1], x 255
    truncated to uint8, LANCZOS back to the image's size."""
    size, mean, std, sigmoid = FAMILIES[family]
    image = Image.open(image_path).convert("RGB")
    small = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS)).astype(np.float64)
    small = small / max(small.max(), 1e-6)
    d0 = ((small[..., channel] - mean[channel]) / std[channel]).astype(np.float32)
    if sigmoid:
        d0 = 1 / (1 + np.exp(-d0))
    unit = (d0 - d0.min()) / (d0.max() - d0.min())
    grey = Image.fromarray((unit * 255).astype(np.uint8), mode="L")
    return np.asarray(grey.resize(image.size, Image.Resampling.LANCZOS))
