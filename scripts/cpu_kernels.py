"""Which environment variables change the CPU kernels, and so the numbers, of a PyTorch run on this machine.

    python scripts/cpu_kernels.py

Runs a few operations the pipeline uses (convolution forward and backward, matmul, softmax, exp, a spatial sum,
bilinear resizing) on fixed inputs in a fresh process per setting, one thread each, and prints a digest of each
result: a setting whose digests equal the native run's does not change the numbers here. The settings force the
kernels another CPU would pick: ``ATEN_CPU_CAPABILITY`` (PyTorch's own vectorized kernels: default, avx2, avx512),
``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions) and ``MKL_ENABLE_INSTRUCTIONS`` (MKL). docs/reproducibility.md uses the
settings that take effect to measure how far the demo's numbers move on another machine.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

SETTINGS = (
    {},
    {"ATEN_CPU_CAPABILITY": "avx2"},
    {"ATEN_CPU_CAPABILITY": "default"},
    {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
)


def digests() -> str:
    """The capability PyTorch chose and a 6-hex digest of each operation's result."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(8, 32, 40, 40, requires_grad=True)
    conv = torch.nn.Conv2d(32, 64, 3, padding=1)
    a, b = torch.randn(257, 513), torch.randn(513, 129)
    y = conv(x)
    y.square().sum().backward()
    with torch.no_grad():
        results = {
            "conv": y,
            "conv_grad": conv.weight.grad,
            "matmul": a @ b,
            "softmax": torch.softmax(x, 1),
            "exp": x.exp(),
            "sum": x.sum((2, 3)),
            "bilinear": torch.nn.functional.interpolate(x, scale_factor=1.7, mode="bilinear"),
        }
    text = " ".join(f"{k}:{hashlib.sha1(v.detach().numpy().tobytes()).hexdigest()[:6]}" for k, v in results.items())
    return f"{torch.backends.cpu.get_cpu_capability()} {text}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(digests())
        return
    native = None
    for setting in SETTINGS:
        env = dict(os.environ, OMP_NUM_THREADS="1", **setting)
        line = subprocess.run(
            [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        native = native or line.split(" ", 1)[1]
        changed = "same as native" if line.split(" ", 1)[1] == native else "CHANGES the numbers"
        name = " ".join(f"{k}={v}" for k, v in setting.items()) or "native"
        print(f"{name:<50} {line}  -> {changed}")


if __name__ == "__main__":
    main()
