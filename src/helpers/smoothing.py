"""Moved to :mod:`helpers.defences.smoothing`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.defences.smoothing")
