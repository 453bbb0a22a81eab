"""Moved to :mod:`helpers.core.validate`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.core.validate")
