"""Attack jobs in worker processes (helpers.studies.workers): the same numbers as in the notebook's own process."""

import numpy as np
import pytest

from helpers.attacks.adaptive import pgd_l2
from helpers.studies.workers import _run_in_worker, model_job, run_jobs


@pytest.mark.slow
def test_jobs_in_two_worker_processes_give_the_flags_of_one_process(trained, first_test_digits):
    x, y = first_test_digits
    jobs = [model_job(pgd_l2, trained.model, trained.path, images=x[:20], labels=y[:20], budgets=budgets, steps=5)
            for budgets in ([0.0, 1.0], [0.0, 2.0, 3.0], [0.5])]
    here = run_jobs(jobs, processes=1)
    there = run_jobs(jobs, processes=2)
    assert [r.budgets.tolist() for r in there] == [[0.0, 1.0], [0.0, 2.0, 3.0], [0.5]]  # in the order of the jobs
    for a, b in zip(here, there, strict=True):
        assert np.array_equal(a.correct, b.correct)
        # The perturbations are not always the same bit for bit: a worker runs TensorFlow on one thread, and on an
        # AVX2-only CPU (an AMD EPYC) oneDNN's sums then round differently, and 5 steps of PGD carry that on (seen: a
        # quarter of the pixels differ in their last bits, a few by up to 0.007). On an Intel CPU with AMX they were identical.
        assert np.abs(a.adversarial - b.adversarial).max() < 0.05
    assert here[1].accuracy[0] > here[1].accuracy[-1]  # a real attack ran: ε = 3 breaks digits the clean model gets right


def test_bad_jobs_fail_with_a_message_naming_the_parameter(trained, tmp_path):
    with pytest.raises(TypeError, match="function: expected a module-level function"):
        model_job(lambda model: model, trained.model, trained.path)
    job = model_job(pgd_l2, trained.model, trained.path, images=np.zeros((1, 28, 28, 1), np.float32), labels=[0], budgets=[0.0])
    with pytest.raises(ValueError, match="processes"):
        run_jobs([job], processes=0)
    with pytest.raises(TypeError, match="jobs: expected"):
        run_jobs([job, "not a job"], processes=2)
    gone = model_job(pgd_l2, trained.model, tmp_path / "gone.keras")
    with pytest.raises(FileNotFoundError, match="model_file: .*gone.keras does not exist"):
        run_jobs([gone, gone], processes=2)
    with pytest.raises(ValueError, match="model_file: .* changed since its job was made"):
        _run_in_worker(pgd_l2, str(trained.path), "0" * 64, {})
