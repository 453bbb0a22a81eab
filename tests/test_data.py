import numpy as np
import pytest
from PIL import Image

from helpers.training.data import load_dataset, make_shapes


def _check(data, shape, classes):
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert x.dtype == np.float32 and x.shape[1:] == shape
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype.kind == "i" and set(np.unique(y)) <= set(range(classes))
    assert data.num_classes == classes


def test_mnist_is_the_real_bundled_digits(mnist):
    _check(mnist, (28, 28, 1), 10)
    assert len(mnist.x_train) + len(mnist.x_test) == 5000
    assert np.bincount(mnist.y_test).min() == 100  # stratified 20 % of 500 per class


def test_digits_and_resizing():
    data = load_dataset("digits", image_size=16)
    _check(data, (16, 16, 1), 10)


def test_shapes_are_balanced_deterministic_and_sized():
    data = load_dataset("shapes", image_size=75, n_images=300, seed=3)
    _check(data, (75, 75, 3), 3)
    assert data.class_names == ("square", "triangle", "circle")
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]))
    assert counts.tolist() == [100, 100, 100]
    again = load_dataset("shapes", image_size=75, n_images=300, seed=3)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    other = load_dataset("shapes", image_size=75, n_images=300, seed=4)
    assert not np.array_equal(other.x_train, data.x_train)


def test_shapes_differ_by_class_not_only_by_colour():
    images, labels = make_shapes(300, image_size=32, seed=0)
    # Each image has a foreground whose area depends on the shape; all three classes occur.
    assert set(labels.tolist()) == {0, 1, 2}
    assert images.std(axis=(1, 2, 3)).min() > 0.02


def test_split_is_seeded_and_disjoint():
    a = load_dataset("digits", seed=1)
    b = load_dataset("digits", seed=1)
    c = load_dataset("digits", seed=2)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_train, c.y_train)
    assert len(a.x_test) == pytest.approx(0.2 * 1797, abs=10)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="name: unknown data set 'cifar'; known: .*mnist.*shapes"):
        load_dataset("cifar")


@pytest.mark.parametrize(
    "kwargs, error, param",
    [({"image_size": 16}, ValueError, "image_size"), ({"test_fraction": 0.0}, ValueError, "test_fraction"),
     ({"seed": -1}, ValueError, "seed"), ({"image_size": 40.5}, TypeError, "image_size"),
     ({"test_fraction": float("nan")}, ValueError, "test_fraction")],
)
def test_bad_arguments_name_the_parameter(kwargs, error, param):
    with pytest.raises(error, match=param):
        load_dataset("shapes", n_images=30, **kwargs)


def test_folder_loader_skips_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(UserWarning, match="skipped 2"):
        data = load_dataset(f"folder:{tmp_path}", image_size=32, test_fraction=0.4)
    _check(data, (32, 32, 3), 2)
    assert data.class_names == ("cat", "dog") and data.skipped_files == 2
    assert len(data.x_train) + len(data.x_test) == 10


def test_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="name: folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_folder_stream_skips_bad_files_and_yields_batches(tmp_path):
    from helpers.training.data import folder_stream

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray((rng.random((10, 12, 3)) * 255).astype(np.uint8)).save(tmp_path / cls / f"{i}.jpg")
    (tmp_path / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="skipped 1"):
        stream, classes = folder_stream(tmp_path, image_size=16, batch_size=4, shuffle=False)
    batches = list(stream)
    assert classes == ("a", "b") and [len(b[1]) for b in batches] == [4, 2]
    images = np.concatenate([b[0].numpy() for b in batches])
    assert images.shape == (6, 16, 16, 3) and 0 <= images.min() and images.max() <= 1
