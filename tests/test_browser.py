"""The built book in a real browser: the sliders work with no kernel and no network.

Debian's ``chromium`` (/usr/bin/chromium), driven by Playwright, loads the quick-profile book from a local
HTTP server on 127.0.0.1. On every page with sliders each slider is dragged with the mouse end to end and
back; at every position the shown panel's value must equal the slider's readout and the shown image must be
the PNG that the page's widget state holds for that value. Every request of every page is recorded, and
none may leave 127.0.0.1, and no page may log a console error or throw an uncaught exception. A variant of a
page that loads the widget scripts from a CDN, as myst-nb does by default, must fail both slider checks.
Screenshots go to ``artifacts/browser/``. The live browser slider is tested in ``test_browser_live.py``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
SLIDER_PAGES = ("book/executed/02_gaussian.html", "book/executed/03_median.html", "book/executed/05_results.html")
CDN_VARIANT = "book/executed/__cdn_variant__.html"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
ARTIFACTS = ROOT / "artifacts" / "browser"


# ------------------------------------------------------------------------------------------ page checks


class _Resources(HTMLParser):
    """URLs a page makes the browser fetch by itself: scripts, stylesheets and other links, images, frames."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href") and attrs.get("rel") not in ("canonical", "author", "license", "search"):
            self.urls.append(attrs["href"])


def off_host(urls, *, host: str = "127.0.0.1") -> list[str]:
    """The URLs that leave ``host`` (relative, data: and blob: URLs stay)."""
    bad = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about", ""):
            if url.startswith("//"):
                bad.append(url)
            continue
        if parts.hostname != host:
            bad.append(url)
    return bad


def page_resources(html_text: str) -> list[str]:
    parser = _Resources()
    parser.feed(html_text)
    return parser.urls


def assert_offline(urls, *, what: str) -> None:
    bad = off_host(urls)
    assert not bad, f"{what} requested {len(bad)} off-host URL(s), e.g. {bad[:3]}"


def cdn_page(html_text: str) -> str:
    """The page as myst-nb renders it with its default ``nb_ipywidgets_js`` (require.js + embed-amd.js from CDNs)."""
    from myst_nb.core.config import ipywidgets_js_factory

    tags = "".join(
        f'<script src="{url}" ' + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + "></script>"
        for url, attrs in ipywidgets_js_factory().items()
    )
    local = re.compile(r'<script src="[^"]*_static/ipywidgets/embed\.js[^"]*"></script>')
    assert local.search(html_text), "the page does not load the local embed.js"
    return local.sub(tags, html_text)


def widget_state(html_text: str) -> dict:
    match = re.search(rf'<script type="{re.escape(STATE_MIME)}">(.*?)</script>', html_text, re.S)
    assert match, "the page carries no widget state"
    return json.loads(match.group(1))["state"]


def expected_sliders(state: dict) -> list[dict]:
    """From the widget state: for each jslink-ed slider, its labels and the SHA-256 of each panel's PNG."""
    def ref(value: str) -> str:
        return value.removeprefix("IPY_MODEL_")

    sliders = []
    for model in state.values():
        if model["model_name"] != "LinkModel":
            continue
        (source, source_trait), (target, target_trait) = model["state"]["source"], model["state"]["target"]
        slider, stack = state[ref(source)], state[ref(target)]
        assert (slider["model_name"], source_trait) == ("SelectionSliderModel", "index")
        assert (stack["model_name"], target_trait) == ("StackModel", "selected_index")
        panels = []
        for child in stack["state"]["children"]:
            html_model, image_model = (state[ref(c)] for c in state[ref(child)]["state"]["children"])
            value = re.search(r'data-value="([^"]*)"', html_model["state"]["value"]).group(1)
            png = next(base64.b64decode(b["data"]) for b in image_model.get("buffers", []) if b["path"] == ["value"])
            panels.append((value, hashlib.sha256(png).hexdigest()))
        labels = slider["state"]["_options_labels"]
        assert [value for value, _ in panels] == labels, "every panel must carry its slider label"
        sliders.append({"labels": labels, "sha": dict(panels)})
    return sliders


def book_pages(html_dir: Path) -> list[str]:
    """The book's HTML pages (not the theme's templates under _static/, nor hidden folders)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        name = path.relative_to(html_dir).as_posix()
        if not name.startswith(("_static/", "_sources/", "_images/", ".")) and "/." not in name:
            pages.append(name)
    return pages


def test_off_host_check_catches_the_cdn_config():
    """Unit-level: the check used on the built pages flags myst-nb's default CDN scripts, not local ones."""
    local = '<script src="../../_static/ipywidgets/embed.js?v=1"></script><a href="https://example.org">x</a>'
    assert page_resources(local) == ["../../_static/ipywidgets/embed.js?v=1"]
    assert off_host(page_resources(local)) == []
    cdn = page_resources(cdn_page(local))
    assert len(off_host(cdn)) == 2 and any("embed-amd.js" in url for url in cdn)
    with pytest.raises(AssertionError, match="off-host"):
        assert_offline(cdn, what="the CDN variant")
    assert off_host(["//cdn.example.org/x.js", "http://127.0.0.1:8000/a.js", "data:image/png;base64,AA"]) == [
        "//cdn.example.org/x.js"]


@pytest.mark.browser
def test_built_pages_reference_nothing_off_host(quick_book):
    pages = book_pages(quick_book)
    assert set(SLIDER_PAGES) <= set(pages)
    for name in pages:
        assert_offline(page_resources((quick_book / name).read_text()), what=name)
    for name in SLIDER_PAGES:
        text = (quick_book / name).read_text()
        assert re.search(r'<script src="[^"]*_static/ipywidgets/embed\.js', text), f"{name}: no local embed.js"
        assert (quick_book / "_static" / "ipywidgets" / "embed.js").exists()
        sliders = expected_sliders(widget_state(text))
        assert sliders, f"{name}: no jslink-ed slider in the widget state"
        assert all(len(s["labels"]) >= 2 and len(set(s["sha"].values())) == len(s["labels"]) for s in sliders)


# ------------------------------------------------------------------------------------------ browser


class _Handler(SimpleHTTPRequestHandler):
    variants: dict[str, bytes] = {}

    def do_GET(self):
        body = self.variants.get(urlsplit(self.path).path.lstrip("/"))
        if body is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium; without it the browser tests skip (before building the book), or fail under CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (apt-get install chromium); CI=1 makes this a failure")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(chromium, quick_book):
    handler = functools.partial(_Handler, directory=str(quick_book))
    _Handler.variants = {CDN_VARIANT: cdn_page((quick_book / SLIDER_PAGES[0]).read_text()).encode()}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(chromium), headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        yield context
        context.close()


def open_page(browser, url: str, *, quiet_ms: int = 1000, limit_ms: int = 30_000):
    """A new tab at ``url`` with every request recorded (off-host ones are recorded, then aborted).

    Returns once the page has loaded and then made no new request, with none pending, for ``quiet_ms``
    (Playwright's own "networkidle" proved unreliable here); after ``limit_ms`` it returns anyway, and the
    checks run on what was recorded.
    """
    page = browser.new_page()
    page.console_errors = console_errors(page)
    requests: list[str] = []
    pending: set = set()
    page.on("request", lambda request: (requests.append(request.url), pending.add(request)))
    page.on("requestfinished", lambda request: pending.discard(request))
    page.on("requestfailed", lambda request: pending.discard(request))

    def route(route):
        if off_host([route.request.url]):
            route.abort()
        else:
            route.continue_()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    quiet, seen, step = 0, -1, 250
    for _ in range(limit_ms // step):
        page.wait_for_timeout(step)
        quiet = quiet + step if len(requests) == seen and not pending else 0
        seen = len(requests)
        if quiet >= quiet_ms:
            break
    return page, requests


def console_errors(page) -> list[str]:
    """A list that collects the page's console errors and uncaught exceptions from now on."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"console error: {message.text} at {message.location.get('url')}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught exception: {error}"))
    return errors


_SHOWN_JS = """async (box) => {
    const readout = box.querySelector('.widget-readout');
    const visible = (el) => el.offsetParent !== null;
    const label = [...box.querySelectorAll('.panel-value')].filter(visible);
    const image = [...box.querySelectorAll('img')].filter(visible);
    let sha = null;
    if (image.length === 1 && image[0].src) {
        const bytes = await (await fetch(image[0].src)).arrayBuffer();
        const digest = await crypto.subtle.digest('SHA-256', bytes);
        sha = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    }
    return {readout: readout ? readout.textContent.trim() : null, labels: label.map((el) => el.dataset.value),
            images: image.length, sha: sha};
}"""


def shown(box) -> dict:
    return box.evaluate(_SHOWN_JS)


def drag(page, box, *, forward: bool, steps: int = 60) -> list[dict]:
    """Drag the slider's handle with the mouse to the other end of its track; the panel seen at every step."""
    track = box.locator(".noUi-target").bounding_box()
    handle = box.locator(".noUi-handle").bounding_box()
    y = handle["y"] + handle["height"] / 2
    start = handle["x"] + handle["width"] / 2
    end = track["x"] + track["width"] + 10 if forward else track["x"] - 10
    page.mouse.move(start, y)
    page.mouse.down()
    seen = []
    for i in range(1, steps + 1):
        page.mouse.move(start + (end - start) * i / steps, y)
        seen.append(shown(box))
    page.mouse.up()
    seen.append(shown(box))
    return seen


def changes(seen: list[dict]) -> list[str]:
    out = []
    for state in seen:
        if not out or out[-1] != state["readout"]:
            out.append(state["readout"])
    return out


@pytest.mark.browser
@pytest.mark.parametrize("name", SLIDER_PAGES)
def test_sliders_drag_end_to_end_offline(browser, server, quick_book, name):
    expected = expected_sliders(widget_state((quick_book / name).read_text()))
    page, requests = open_page(browser, f"{server}/{name}")
    boxes = page.locator(".static-slider")
    boxes.first.locator(".noUi-handle").wait_for(state="visible")
    assert boxes.count() == len(expected), f"{name}: {boxes.count()} sliders rendered, {len(expected)} in the state"
    stem = Path(name).stem
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index in range(boxes.count()):
        box = boxes.nth(index)
        box.scroll_into_view_if_needed()
        first = shown(box)
        spec = next(s for s in expected if s["labels"][0] == first["readout"])
        assert first["labels"] == [first["readout"]] and first["sha"] == spec["sha"][first["readout"]]
        box.screenshot(path=str(ARTIFACTS / f"{stem}-{index}-start.png"))
        forward = drag(page, box, forward=True)
        box.screenshot(path=str(ARTIFACTS / f"{stem}-{index}-end.png"))
        backward = drag(page, box, forward=False)
        # Every position shows exactly one panel: the one of the slider's value, with that value's image.
        for state in forward + backward:
            assert state["images"] == 1 and state["labels"] == [state["readout"]], f"{name}: {state}"
            assert state["sha"] == spec["sha"][state["readout"]], f"{name}: wrong image for {state['readout']}"
        # The drag passed through every value, in order, and back.
        assert changes(forward) == spec["labels"], f"{name}: forward drag showed {changes(forward)}"
        assert changes(backward) == spec["labels"][::-1], f"{name}: backward drag showed {changes(backward)}"
        assert len({s["sha"] for s in forward}) == len(spec["labels"])
    page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
    assert any(url.endswith(name) for url in requests)
    assert any("_static/ipywidgets/embed.js" in url for url in requests)
    assert_offline(requests, what=name)
    assert not page.console_errors, f"{name}: {page.console_errors}"
    page.close()


@pytest.mark.browser
def test_no_page_requests_anything_off_host_or_logs_an_error(browser, server, quick_book):
    """Every page: nothing off-host, and no console error or uncaught exception (e.g. a script declared twice)."""
    for name in book_pages(quick_book):
        page, requests = open_page(browser, f"{server}/{name}")
        assert_offline(requests, what=name)
        assert not page.console_errors, f"{name}: {page.console_errors}"
        page.close()


@pytest.mark.browser
def test_cdn_variant_fails_both_checks(browser, server):
    """With myst-nb's default CDN scripts instead of the local embed.js, the page goes off-host and no widget renders."""
    page, requests = open_page(browser, f"{server}/{CDN_VARIANT}")
    with pytest.raises(AssertionError, match="off-host"):
        assert_offline(requests, what="the CDN variant")
    assert any("embed-amd.js" in url for url in requests)
    assert page.locator(".static-slider").count() == 0
    assert page.locator(".noUi-handle").count() == 0
    assert page.locator(f'script[type="{STATE_MIME}"]').count() == 1  # the state is there; nothing renders it
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "cdn-variant.png"), full_page=True)
    page.close()
