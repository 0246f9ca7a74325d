"""EPS++ as a PyTorch Lightning pipeline."""

__version__ = "0.1.0"
