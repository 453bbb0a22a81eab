"""Moved to :mod:`helpers.core.stats`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.core.stats")
