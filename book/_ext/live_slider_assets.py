"""Write ``_static/live-slider/live-slider.js`` (the browser slider's ES module and loader) into the built book.

It is generated from ``src/js/`` at every build, so the pages always run the current code even when the
notebooks that embed the sliders were not re-executed. The weights files beside it (``models/<key>.js``) are
written by the notebooks into ``book/_static/live-slider/models/`` and copied like any static file.
"""

from __future__ import annotations

from pathlib import Path


def write_bundle(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from helpers.slider_bundle import bundle_script

    target = Path(app.outdir) / "_static" / "live-slider" / "live-slider.js"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(bundle_script(), encoding="utf-8")


def setup(app):
    app.connect("build-finished", write_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
