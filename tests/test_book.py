"""The executed book: notebook sources, the quick-profile run, the build, and bad notebook parameters."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.book.profiles import NEEDS, NOTEBOOKS, PROFILES, RUNS_ALONE, STARTS_FIRST

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_sources_are_stripped_with_one_parameters_cell(name):
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code)
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    from run_book import notebook_parameters

    assert set(notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb")) <= set(PROFILES["default"])


def test_toc_lists_every_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    for name in NOTEBOOKS:
        assert f"book/executed/{name}" in toc


@pytest.mark.notebooks
def test_quick_book_builds_with_real_outputs(quick_book):
    html = Path(quick_book)
    assert (html / "index.html").exists()
    for name in NOTEBOOKS:
        page = (html / "book" / "executed" / f"{name}.html").read_text()
        assert "Traceback" not in page and "output error" not in page, name
        assert "injected-parameters" not in page
    attack = (html / "book" / "executed" / "01_attack.html").read_text()
    assert attack.count("<img") >= 2
    for result in ("attack.csv", "gaussian_transfer.csv", "median_transfer.csv", "training.csv", "results.csv", "paper_claims.json", "provenance.json"):
        assert (ROOT / "data" / "results" / result).stat().st_size > 0, result


@pytest.mark.notebooks
def test_rerun_with_nothing_changed_executes_nothing(quick_book):
    out = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "quick", "--no-build"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.count("unchanged, kept") == len(NOTEBOOKS), out.stdout
    # The terminal shows the runner's own lines, not TensorFlow's C++ log (which goes to book/executed/NAME.log).
    tf_lines = [line for line in (out.stdout + out.stderr).splitlines()
                if re.match(r"^([IWEF]\d{4} |WARNING: All log messages before absl)", line)]
    assert not tf_lines, tf_lines[:3]


@pytest.mark.notebooks
def test_bad_notebook_parameter_fails_in_the_first_code_cell(tmp_path, quick_book):
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "notebooks/02_gaussian.ipynb", str(tmp_path / "out.ipynb"), "--cwd", str(ROOT),
         "-k", "python3", "-y", '{"sigmas": [0, -1.5]}'],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert out.returncode != 0
    assert "sigmas: must be >= 0.0, got -1.5" in out.stderr + out.stdout
    nb = json.loads((tmp_path / "out.ipynb").read_text())
    executed = [c for c in nb["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
    failing = [c for c in executed if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    # parameters and injected parameters run first, then the first real code cell fails
    assert len(failing) == 1 and executed.index(failing[0]) == 2


def test_runner_rejects_unknown_profile_and_parameter():
    out = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "fast"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "profile" in out.stderr
    out = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "quick", "-p", "sigma", "1"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "-p sigma: unknown parameter" in out.stderr
    out = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "quick", "--jobs", "0"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and out.stderr.strip() == "error: --jobs: must be >= 1, got 0"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameter_cell_is_derived_from_the_parameter_table(name):
    from helpers.book.profiles import parameters_cell

    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    values: dict = {}
    exec("".join(cell["source"]), {}, values)  # the notebook's own literal defaults
    for key, value in values.items():
        assert value == PROFILES["default"][key], f"{name}: {key} = {value!r}, default profile has {PROFILES['default'][key]!r}"
    assert "".join(cell["source"]) == parameters_cell(list(values)), (
        f"{name}: its parameters cell differs from helpers.book.profiles.PARAMETERS; run scripts/run_book.py --sync-parameters")


def test_every_declared_parameter_is_checked_and_valid_in_every_profile():
    from helpers.book.profiles import PARAMETERS, check_declared, profile_parameters

    for profile in PROFILES:
        check_declared(profile_parameters(profile, data_dir="DATA") if profile == "paper" else profile_parameters(profile))
    for parameter in PARAMETERS:
        with pytest.raises((TypeError, ValueError), match=parameter.name):
            check_declared({parameter.name: object()})


def _reads_and_writes(name: str) -> tuple[set[str], set[str]]:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    reads = set(re.findall(r"\b([A-Z][A-Z_]{3,})\.read\(", code)) | set(re.findall(r"transfer_table\(\"(\w+)\"\)\.read", code))
    writes = set(re.findall(r"\b([A-Z][A-Z_]{3,})\.write\(", code)) | set(re.findall(r"transfer_table\(\"(\w+)\"\)\.write", code))
    return reads, writes


def test_needs_name_earlier_notebooks_and_cover_every_results_file_read():
    assert list(NEEDS) == list(NOTEBOOKS) and set(RUNS_ALONE) | set(STARTS_FIRST) <= set(NOTEBOOKS)
    writer = {}
    for name in NOTEBOOKS:
        assert all(NOTEBOOKS.index(need) < NOTEBOOKS.index(name) for need in NEEDS[name]), name
        writer |= dict.fromkeys(_reads_and_writes(name)[1], name)
    for name in NOTEBOOKS:
        before, todo = set(), list(NEEDS[name])
        while todo:
            need = todo.pop()
            before.add(need)
            todo += [n for n in NEEDS[need] if n not in before]
        for read in _reads_and_writes(name)[0] - {"RUN_LOG"}:
            assert writer[read] in before, f"{name} reads {read}, written by {writer[read]}, which it does not need"


def _simulate(jobs: int, seconds: dict[str, float]) -> list[tuple[str, float, float]]:
    """Run the scheduler on notebooks that take the given times; returns (name, start, end) in start order."""
    from run_book import startable

    pending, done, running, clock, spans = list(NOTEBOOKS), set(), {}, 0.0, []
    while pending or running:
        for name in startable(pending, done=done, running=running, jobs=jobs):
            pending.remove(name)
            running[name] = clock
        assert running, "the scheduler left notebooks waiting with nothing running"
        name = min(running, key=lambda n: running[n] + seconds[n])
        clock = running[name] + seconds[name]
        spans.append((name, running.pop(name), clock))
        done.add(name)
    return sorted(spans, key=lambda span: span[1])


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_scheduler_keeps_needs_and_lets_timing_chapters_run_alone(jobs):
    seconds = {name: 10.0 + 7 * (i % 3) for i, name in enumerate(NOTEBOOKS)}
    spans = _simulate(jobs, seconds)
    assert sorted(name for name, _, _ in spans) == sorted(NOTEBOOKS)
    end = {name: stop for name, _, stop in spans}
    for name, start, stop in spans:
        assert all(end[need] <= start for need in NEEDS[name]), name
        assert sum(s <= start < e for _, s, e in spans) <= jobs
        overlapping = [other for other, s, e in spans if other != name and s < stop and e > start]
        if name in RUNS_ALONE:
            assert not overlapping, (name, overlapping)
    if jobs == 1:
        assert [name for name, _, _ in spans] == list(NOTEBOOKS)
    else:  # what needs nothing starts at once, in book order: chapter 1 beside chapter 4 (and chapter 7's first page)
        assert [name for name, start, _ in spans if start == 0] == ["01_attack", "04_training", "07_trusted"][:jobs]
        assert end["06_adaptive"] < sum(seconds.values()) - seconds["01_attack"]


def test_the_longest_chapter_starts_first_when_several_may():
    from run_book import startable

    done = {"01_attack", "02_gaussian", "03_median", "04_training"}
    pending = [name for name in NOTEBOOKS if name not in done]
    assert startable(pending, done=done, running=[], jobs=2) == ["06_adaptive", "05_results"]
    assert startable(pending, done=done, running=[], jobs=1) == ["05_results"]  # one at a time: book order


# ---------------------------------------------------------------- the book as its readers meet it
LOG_LINE = re.compile(r"^(Epoch \d+/\d+|\d+/\d+ .*(step|ETA)|WARNING:(tensorflow|absl)|[IWEF]\d{4} \d\d:\d\d|.*triggered tf\.function retracing)",
                      re.M)


def _pages(html: Path) -> dict[str, "object"]:
    from bs4 import BeautifulSoup

    pages = {name: html / "book" / "executed" / f"{name}.html" for name in NOTEBOOKS}
    pages["intro"] = html / "book" / "intro.html"  # index.html only redirects there
    pages["about"] = html / "book" / "about.html"
    return {name: BeautifulSoup(path.read_text(), "html.parser") for name, path in pages.items()}


def _in_cell(node) -> bool:
    return any("cell" in (parent.get("class") or []) for parent in node.parents if parent.name == "div")


@pytest.mark.notebooks
def test_built_pages_show_no_code_logs_or_raw_values(quick_book):
    """Code one click away (hide-input), no log line, traceback, path object or `nan` cell, no empty output toggle."""
    problems = []
    for name, soup in _pages(Path(quick_book)).items():
        for cell in soup.select("div.cell"):
            classes = cell.get("class") or []
            if cell.select_one("div.cell_input") is not None and "tag_hide-input" not in classes:
                problems.append(f"{name}: code shown: {cell.select_one('div.cell_input').get_text()[:60]!r}")
            if "tag_hide-output" in classes and not cell.select_one("div.cell_output").get_text(strip=True):
                problems.append(f"{name}: an output toggle that opens onto nothing")
        for output in soup.select("div.cell_output"):
            text = output.get_text("\n")
            for bad in ("Traceback", "PosixPath"):
                if bad in text:
                    problems.append(f"{name}: {bad} in an output")
            match = LOG_LINE.search(text)
            if match:
                problems.append(f"{name}: log line {match.group(0)[:60]!r}")
        for cell in soup.select("td, th"):
            if cell.get_text(strip=True).lower() in ("nan", "<na>"):
                problems.append(f"{name}: {cell.get_text(strip=True)!r} in a table")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.notebooks
def test_built_pages_number_chapters_and_caption_every_figure(quick_book):
    problems = []
    for name, soup in _pages(Path(quick_book)).items():
        if name != "intro":
            if not any(h1.select_one("span.section-number") is not None for h1 in soup.select("h1")):
                problems.append(f"{name}: the chapter has no number")
        for image in soup.select("div.cell_output img"):
            figure = image.find_parent("figure")
            caption = figure.select_one("figcaption") if figure is not None else None
            if caption is None or caption.select_one("span.caption-number") is None:
                problems.append(f"{name}: a figure without a numbered caption ({image.get('src')})")
            elif not (image.get("alt") or "").strip() or "/" in image.get("alt", "") and image["alt"].endswith(".png"):
                problems.append(f"{name}: a figure without alt text")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.notebooks
def test_prose_prints_values_not_parameter_names_and_every_glue_resolves(quick_book):
    """No parameter name where its value belongs, no "chapter N" that is not a link, no glue left unresolved."""
    from bs4 import BeautifulSoup

    from helpers.book.profiles import PARAMETERS

    names = {p.name for p in PARAMETERS}
    problems = []
    for name, soup in _pages(Path(quick_book)).items():
        body = soup.select_one("main") or soup
        for code in body.select("code"):
            if name == "about":  # the page on how the book is built documents the parameters by name
                break
            if code.get_text(strip=True) in names and not _in_cell(code) and code.find_parent("pre") is None:
                problems.append(f"{name}: parameter name {code.get_text(strip=True)!r} printed in the prose")
        text = body.get_text(" ")
        prose = BeautifulSoup(str(body), "html.parser")  # the prose alone: no links, no cells
        for node in prose.select("a, div.cell"):
            node.decompose()
        for match in re.finditer(r"\b[Cc]hapters? \d", prose.get_text(" ")):
            problems.append(f"{name}: {match.group(0)!r} in words, not a link")
        for left in ("{glue", "glue:text", "::end_C"):
            if left in text:
                problems.append(f"{name}: unresolved glue ({left!r} left in the page)")
    # every glue role of a page became text: as many pasted values as roles
    pasted = 'class="pasted-text"'
    sources = {name: "".join("".join(c["source"]) for c in json.loads((ROOT / "book" / "executed" / f"{name}.ipynb").read_text())["cells"]
                             if c["cell_type"] == "markdown") for name in NOTEBOOKS}
    sources["intro"] = (ROOT / "book" / "intro.md").read_text()
    for name, text in sources.items():
        page = (Path(quick_book) / ("book/intro.html" if name == "intro" else f"book/executed/{name}.html")).read_text()
        roles, values = text.count("{glue:text}`"), page.count(pasted)
        if values < roles:
            problems.append(f"{name}: {roles} glue roles but {values} pasted values")
    assert not problems, "\n".join(problems[:20])
