"""Training and attacking under a tf.distribute strategy (2 logical CPU devices, in a fresh process)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from helpers.attacks.attack import targeted_attack
    from helpers.training.data import load_dataset
    from helpers.studies.evaluate import clean_accuracy, random_targets
    from helpers.training.train import fit_cached

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    data = load_dataset("mnist", n_images=1500)
    fit = fit_cached("small_cnn", data, defence="gaussian:1", epochs=2, cache_dir=sys.argv[1], strategy=strategy, verbose=0)
    accuracy = clean_accuracy(fit.model, data.x_test, data.y_test)
    again = fit_cached("small_cnn", data, defence="gaussian:1", epochs=2, cache_dir=sys.argv[1], strategy=strategy, verbose=0)
    targets = random_targets(data.y_test[:10], num_classes=10, seed=0)
    result = targeted_attack(again.model, data.x_test[:10], targets, progress=False)
    print("RESULT", accuracy, again.from_cache, result.success.mean())
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_replicas(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")][0].split()
    accuracy, from_cache, success = float(line[1]), line[2] == "True", float(line[3])
    assert accuracy > 0.8 and from_cache and success >= 0.9
