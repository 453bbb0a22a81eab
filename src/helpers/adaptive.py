"""Moved to :mod:`helpers.attacks.adaptive`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.attacks.adaptive")
