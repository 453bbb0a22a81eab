"""Moved to :mod:`helpers.bench.reference_attacks`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.bench.reference_attacks")
