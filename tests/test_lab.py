"""A chapter rerun in a real JupyterLab, as a reader does it: `make lab`, open chapter 2, run all, move the slider.

``make lab`` starts on a free loopback port with a token; Debian's ``chromium``, driven by Playwright, opens
``notebooks/02_gaussian.ipynb``, runs every cell through JupyterLab's own "run all cells" command and waits for the
last one. No cell may end in an error, and the parameters must be the quick profile's (the book this test builds).
Then the kernel slider (``helpers.book.widgets.live_slider``) is dragged with the mouse: the kernel must blur, predict and
attack for the new σ, so the shown image and the caption with the defended model's answers must change. The server
is stopped whatever happens; its log and a screenshot go to ``artifacts/lab/``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.studies import results

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "artifacts" / "lab"
CHAPTER = "notebooks/02_gaussian.ipynb"

pytestmark = [pytest.mark.browser, pytest.mark.notebooks]

# The open notebook's cells, from JupyterLab's own model (exposed with --LabApp.expose_app_in_browser).
CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return null;
  const cells = [];
  for (const cell of panel.content.model.cells) {
    cells.push({type: cell.type, count: cell.type === 'code' ? cell.executionCount : null,
                outputs: cell.type === 'code' ? cell.outputs.toJSON() : []});
  }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {cells, status: kernel ? kernel.status : 'none'};
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, proc: subprocess.Popen, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"make lab exited with {proc.returncode} before serving (log in {ARTIFACTS / 'server.log'})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url} within {timeout_s:.0f} s")


@pytest.fixture
def chromium() -> Path:
    """Debian's chromium; without it this test skips (before building the book), or fails under CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (apt-get install chromium); CI=1 makes this a failure")
    return CHROMIUM


@pytest.fixture
def lab(chromium, quick_book, tmp_path):
    """``make lab`` on a free loopback port with a token, for the quick-profile build; stopped at the end. Its user
    settings (autosave off, so the chapter's source is never rewritten; no news pop-up) and workspaces live in
    ``tmp_path``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = {k: v for k, v in os.environ.items() if k not in ("PROFILE", "BOOK_PROFILE", "BOOK_ROOT")} | {
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    args = f"--port {port} --token {token} --no-browser --LabApp.expose_app_in_browser=True"
    with open(ARTIFACTS / "server.log", "wb") as log:
        proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, timeout_s=90)
            yield f"http://127.0.0.1:{port}", token
        finally:
            stop(proc)
    assert proc.returncode is not None


def stop(proc: subprocess.Popen) -> None:
    """Stop ``make lab`` and everything it started (its own process group)."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def cells_state(page) -> dict:
    return page.evaluate(CELLS_JS)


def test_chapter_two_runs_in_jupyterlab_and_its_kernel_slider_recomputes(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    before = digests()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{CHAPTER}?token={token}", wait_until="domcontentloaded")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                                   timeout=90_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # Every code cell executed (a number, not the queued null) and the kernel idle again.
            page.wait_for_function(f"""() => {{ const s = ({CELLS_JS})(); if (!s || s.status !== 'idle') return false;
                const failed = s.cells.some(c => c.outputs.some(o => o.output_type === 'error'));
                return failed || s.cells.every(c => c.type !== 'code' || c.count !== null); }}""",
                                   timeout=150_000, polling=500)
            state = cells_state(page)
            errors = [o for c in state["cells"] for o in c["outputs"] if o.get("output_type") == "error"]
            assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"
            shown = json.dumps(state["cells"])
            assert "Profile quick" in shown, "the chapter did not take the quick profile of the build it reads"

            box = page.locator(".live-slider").first
            box.scroll_into_view_if_needed()
            image, caption = box.locator("img").first, box.locator(".widget-html-content").first
            before_src, before_caption = image.get_attribute("src"), caption.inner_text()
            track = box.locator(".noUi-target").first
            handle = box.locator(".noUi-handle").first
            handle_box, track_box = handle.bounding_box(), track.bounding_box()
            page.mouse.move(handle_box["x"] + handle_box["width"] / 2, handle_box["y"] + handle_box["height"] / 2)
            page.mouse.down()
            page.mouse.move(track_box["x"] + 0.5 * track_box["width"], track_box["y"] + track_box["height"] / 2, steps=8)
            page.mouse.up()
            # The kernel blurs, predicts and attacks for the new value, then sends the new caption and image.
            page.wait_for_function("""([before]) => {
                const box = document.querySelector('.live-slider');
                const html = box.querySelector('.widget-html-content');
                return html && html.innerText !== before && html.innerText.includes('Defended model'); }""",
                                   arg=[before_caption], timeout=60_000, polling=250)
            page.wait_for_function("() => { const s = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;"
                                   " return s.status === 'idle'; }", timeout=60_000)
            readout = box.locator(".widget-readout").first.inner_text()
            after_src, after_caption = image.get_attribute("src"), caption.inner_text()
            page.screenshot(path=str(ARTIFACTS / "chapter2-slider.png"), full_page=False)
            assert float(readout) > 0, readout
            assert after_src and after_src != before_src, "the shown image did not change"
            assert f"= {float(readout):g}" in after_caption, (readout, after_caption)
            assert "reached the target on" in after_caption, after_caption
            late = [o for c in cells_state(page)["cells"] for o in c["outputs"] if o.get("output_type") == "error"]
            assert not late, f"{late[0]['ename']}: {late[0]['evalue']}"
        finally:
            browser.close()
    # Rerun in Lab with the build's own parameters, the chapter rewrites the runner's results byte for byte, and its
    # source (autosave off) and everything else the runner made are as they were.
    assert digests() == before, "a Lab rerun changed files that make book wrote"


def digests() -> dict[str, str]:
    """SHA-256 of every results file, executed chapter and notebook source."""
    from helpers.core.io import file_sha256

    files = [*results.results_dir().glob("*"), *(ROOT / "book" / "executed").glob("*.ipynb"), *(ROOT / "notebooks").glob("*.ipynb")]
    return {str(p): file_sha256(p) for p in files if p.is_file() and p.name not in ("run_log.json",)}
