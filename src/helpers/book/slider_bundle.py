"""The browser slider's script, bundled: the ES module and its loader from ``src/js/``, with no TensorFlow import,
so that the book build (``book/_ext/live_slider_assets.py``) can write it without waking TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

JS_DIR = Path(__file__).resolve().parents[2] / "js"
ESM_FILE = JS_DIR / "live_slider.js"
LOADER_FILE = JS_DIR / "live_slider_loader.js"


def bundle_script() -> str:
    """``live-slider.js``: the ES module's text (as ``window.liveSliderESM``) followed by the loader.

    The book build writes it into ``_static/live-slider/`` (``book/_ext/live_slider_assets.py``), so the pages
    always carry the current ``src/js`` code, whichever notebooks were re-executed."""
    esm, loader = ESM_FILE.read_text(), LOADER_FILE.read_text()
    head = "// Generated from src/js/live_slider.js (the ES module) and src/js/live_slider_loader.js; do not edit.\n"
    return f"{head}window.liveSliderESM = window.liveSliderESM || {json.dumps(esm)};\n{loader}"
