"""Moved to :mod:`helpers.book.slider_bundle`; this path keeps working for one release, with a DeprecationWarning."""

from helpers._moved import moved

moved(__name__, "helpers.book.slider_bundle")
