"""The old flat module paths keep working for one release, the user's names import from ``helpers`` itself, and a
model file written before the move still loads."""

import importlib
import json
import subprocess
import sys
import textwrap
import warnings
import zipfile

import numpy as np
import pytest

from helpers._moved import moved  # noqa: F401  (the shims' helper)

OLD_PATHS = {
    "helpers.validate": "helpers.core.validate", "helpers.io": "helpers.core.io", "helpers.paths": "helpers.core.paths",
    "helpers.engine": "helpers.core.engine", "helpers.stats": "helpers.core.stats",
    "helpers.filters": "helpers.defences.filters", "helpers.smoothing": "helpers.defences.smoothing",
    "helpers.robust_training": "helpers.defences.robust_training",
    "helpers.data": "helpers.training.data", "helpers.models": "helpers.training.models", "helpers.train": "helpers.training.train",
    "helpers.attack": "helpers.attacks.attack", "helpers.adaptive": "helpers.attacks.adaptive",
    "helpers.apgd": "helpers.attacks.apgd", "helpers.square": "helpers.attacks.square", "helpers.minnorm": "helpers.attacks.minnorm",
    "helpers.evaluate": "helpers.studies.evaluate", "helpers.scores": "helpers.studies.scores",
    "helpers.adaptive_study": "helpers.studies.adaptive_study", "helpers.alternatives": "helpers.studies.alternatives",
    "helpers.verdicts": "helpers.studies.verdicts", "helpers.results": "helpers.studies.results",
    "helpers.profiles": "helpers.book.profiles", "helpers.preflight": "helpers.book.preflight",
    "helpers.notebook": "helpers.book.notebook", "helpers.runlog": "helpers.book.runlog", "helpers.plots": "helpers.book.plots",
    "helpers.widgets": "helpers.book.widgets", "helpers.browser_slider": "helpers.book.browser_slider",
    "helpers.slider_bundle": "helpers.book.slider_bundle",
    "helpers.performance": "helpers.bench.performance", "helpers.timing": "helpers.bench.timing",
    "helpers.flops": "helpers.bench.flops", "helpers.peers": "helpers.bench.peers",
    "helpers.reference_attacks": "helpers.bench.reference_attacks", "helpers.filter_costs": "helpers.bench.filter_costs",
}


@pytest.mark.parametrize("old, new", sorted(OLD_PATHS.items()))
def test_an_old_path_is_the_new_module_with_a_warning_naming_it(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_every_flat_module_is_listed():
    from pathlib import Path

    import helpers

    flat = {f"helpers.{p.stem}" for p in Path(helpers.__file__).parent.glob("*.py") if p.stem not in ("__init__", "_moved")}
    assert flat == set(OLD_PATHS)


def test_the_users_names_import_from_helpers():
    import helpers
    from helpers.attacks.attack import targeted_attack
    from helpers.defences.filters import Defence
    from helpers.studies.evaluate import attack_evaluation, clean_accuracy, paper_score
    from helpers.training.data import load_dataset
    from helpers.training.train import train_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (helpers.load_dataset, helpers.train_model, helpers.targeted_attack, helpers.attack_evaluation,
                helpers.clean_accuracy, helpers.paper_score, helpers.Defence) == (
            load_dataset, train_model, targeted_attack, attack_evaluation, clean_accuracy, paper_score, Defence)
    for name in helpers.__all__:
        assert getattr(helpers, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        helpers.no_such_name  # noqa: B018


def test_import_helpers_stays_cheap():
    code = "import sys, helpers; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


_LOAD_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    warnings.simplefilter("error", DeprecationWarning)
    import keras
    import helpers.training.train  # what the cache imports before it loads a model (registers the layers)
    model = keras.models.load_model(sys.argv[1], safe_mode=True)
    np.save(sys.argv[2], model.predict(np.load(sys.argv[3]), verbose=0))
    print(",".join(type(layer).__module__ for layer in model.layers))
    """
)


@pytest.mark.slow
def test_a_model_saved_under_the_old_module_paths_loads(tmp_path):
    """Model files written before the move name ``helpers.filters`` / ``helpers.models`` as their layers' module; the
    layers are registered under the same names (``helpers>GaussianBlur``, …), so such a file loads, in a fresh
    process, without going through the old paths."""
    import keras

    from helpers.defences.filters import GaussianBlur, MedianFilter

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 1)), GaussianBlur(1.5), MedianFilter(3), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    new = tmp_path / "new.keras"
    model.save(new)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(new) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert '"module": "helpers.defences.filters"' in text
                data = text.replace('"module": "helpers.defences.filters"', '"module": "helpers.filters"').encode()
                assert json.loads(data)["config"]["layers"][1]["module"] == "helpers.filters"
            target.writestr(item, data)
    x = np.random.default_rng(0).random((2, 12, 12, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(old), str(tmp_path / "logits.npy"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "helpers.defences.filters" in out.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), model.predict(x, verbose=0))
