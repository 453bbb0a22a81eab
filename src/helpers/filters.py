"""Moved to :mod:`helpers.defences.filters`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.defences.filters")
