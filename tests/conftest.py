import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist():
    from helpers.training.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory, worker_id):
    """One model cache for the whole run: pytest-xdist's workers share it (the cache's lock lets one of them train a
    model and the others load it), so each session model is trained once."""
    if worker_id == "master":
        return tmp_path_factory.mktemp("models")
    shared = tmp_path_factory.getbasetemp().parent / "models"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def trained(mnist, model_cache):
    """small_cnn trained 5 epochs on the 4 000 MNIST training digits (the foundation's reference model)."""
    from helpers.training.train import fit_cached

    return fit_cached("small_cnn", mnist, epochs=5, cache_dir=model_cache, verbose=0)


@pytest.fixture(scope="session")
def first_test_digits(mnist):
    """The first 60 test digits in a fixed order, correct or not (robust accuracy is over all images)."""
    return mnist.x_test[:60], mnist.y_test[:60]


@pytest.fixture(scope="session")
def correct_subset(mnist, trained):
    """100 correctly classified test digits with seeded random wrong targets."""
    from helpers.studies.evaluate import predict_logits, random_targets

    logits = predict_logits(trained.model, mnist.x_test)
    correct = np.flatnonzero(logits.argmax(1) == mnist.y_test)[:100]
    targets = random_targets(mnist.y_test[correct], num_classes=10, seed=1)
    return mnist.x_test[correct], mnist.y_test[correct], targets


@pytest.fixture(scope="session")
def quick_book() -> Path:
    """The quick-profile book, built once per session; returns its HTML folder.

    Copies the pinned widget/MathJax scripts first when missing (``make widget-assets``), then runs
    ``scripts/run_book.py --profile quick``, which re-executes only changed notebooks and rebuilds the book.
    ``REUSE_BOOK=1`` skips both when a built book exists (for iterating on the browser test).
    """
    html = ROOT / "book" / "_build" / "html"
    if os.environ.get("REUSE_BOOK") == "1" and (html / "index.html").exists():
        return html
    if not (ROOT / "book" / "_static" / "ipywidgets" / "embed.js").exists():
        subprocess.run(["make", "--no-print-directory", "widget-assets"], cwd=ROOT, check=True)
    result = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "quick"], cwd=ROOT)
    if result.returncode != 0:
        pytest.fail("scripts/run_book.py --profile quick failed (see the output above)")
    return html


# Under pytest-xdist (``make test`` and ``make unit`` run ``-n 2``) every test file that uses the quick-profile book runs in
# one worker, in file order, so the book is built once and no other test sees it half-rebuilt; every other file runs
# whole in one worker, so its module fixtures (trained models) are built once. (pytest-xdist's own ``loadgroup`` cannot
# do this under pytest 9: it marks groups by rewriting ``item._nodeid``, which pytest 9 no longer reads.)
BOOK_FILES = {f"tests/{p.name}" for p in Path(__file__).parent.glob("test_*.py") if "quick_book" in p.read_text()}


# The longest files after the book's, first: the last scopes a worker starts should be short (``-n 2`` runs with
# ``--no-loadscope-reorder``, so the workers take the scopes in this order).
LONG_FILES = ["tests/test_paper_profile.py", "tests/test_apgd.py", "tests/test_reliability.py", "tests/test_distributed.py"]


def _file_rank(item) -> int:
    file = item.nodeid.split("::")[0]
    return 0 if file in BOOK_FILES else 1 + LONG_FILES.index(file) if file in LONG_FILES else 1 + len(LONG_FILES)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_file_rank)  # stable: the tests of a file keep their order


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class BookFirstScheduling(LoadScopeScheduling):
        """Scopes are test files, and the book's files are one scope; scopes start in collection order (_file_rank)."""

        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::")[0]
            return "quick_book" if file in BOOK_FILES else file

    return BookFirstScheduling(config, log)
