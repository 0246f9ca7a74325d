"""EPS++ as a PyTorch Lightning pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("epspp")  # the one version source: pyproject.toml's [project] version
except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
    __version__ = "0+unknown"
