"""Moved to :mod:`helpers.studies.adaptive_study`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.studies.adaptive_study")
