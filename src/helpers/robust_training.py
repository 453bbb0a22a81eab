"""Moved to :mod:`helpers.defences.robust_training`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.defences.robust_training")
