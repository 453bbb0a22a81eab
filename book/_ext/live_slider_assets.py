"""Write the browser slider's files into the built book's ``_static/live-slider/``.

``live-slider.js`` (its ES module and loader) is generated from ``src/js/`` at every build, so the pages always run
the current code even when the notebooks that embed the sliders were not re-executed. The weights files beside it
(``models/<key>.js``) are written by the notebooks into ``data/live-slider/`` (:func:`helpers.core.paths.live_slider_dir`,
under the repository root, so a chapter rerun in JupyterLab writes only under ``data/``) and copied here.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def write_bundle(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from helpers.book.slider_bundle import bundle_script
    from helpers.core.paths import live_slider_dir

    target = Path(app.outdir) / "_static" / "live-slider"
    (target / "models").mkdir(parents=True, exist_ok=True)
    (target / "live-slider.js").write_text(bundle_script(), encoding="utf-8")
    for weights in sorted(live_slider_dir().glob("*.js")):
        shutil.copyfile(weights, target / "models" / weights.name)


def setup(app):
    app.connect("build-finished", write_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
