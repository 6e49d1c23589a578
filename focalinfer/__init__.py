"""focalinfer: ImageNet classifiers from a PyTorch checkpoint to a measured accuracy."""

__version__ = "0.1.0"
