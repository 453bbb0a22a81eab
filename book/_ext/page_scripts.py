"""Each inline script once per page (a Sphinx 7.4 bug otherwise repeats some of them).

Sphinx 7.4 stores an inline script that an extension adds after the builder started (``app.add_js_file(None,
body=...)``: sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) once under the file name
``None`` and, when it prepares writing, again under ``''``. The two copies compare unequal, so every page got both,
and the second ``const`` declaration threw ``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``.
This extension drops the repeats from each page's script list just before the page is rendered.
"""

from __future__ import annotations


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", script) or "", tuple(sorted((str(k), str(v)) for k, v in attributes.items())))


def drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # the same list the builder restores after each page


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
