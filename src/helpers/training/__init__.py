"""Data sets, architectures and training with a verified on-disk cache."""
