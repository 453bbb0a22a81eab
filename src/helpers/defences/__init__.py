"""Defences: the filter kinds and their Keras layers, randomized smoothing, robust training regimes."""
