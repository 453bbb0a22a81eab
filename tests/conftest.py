import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    from helpers.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def trained(mnist, model_cache):
    """small_cnn trained 5 epochs on the 4 000 MNIST training digits (the foundation's reference model)."""
    from helpers.train import fit_cached

    return fit_cached("small_cnn", mnist, epochs=5, cache_dir=model_cache, verbose=0)


@pytest.fixture(scope="session")
def correct_subset(mnist, trained):
    """100 correctly classified test digits with seeded random wrong targets."""
    from helpers.evaluate import predict_logits, random_targets

    logits = predict_logits(trained.model, mnist.x_test)
    correct = np.flatnonzero(logits.argmax(1) == mnist.y_test)[:100]
    targets = random_targets(mnist.y_test[correct], num_classes=10, seed=1)
    return mnist.x_test[correct], mnist.y_test[correct], targets
