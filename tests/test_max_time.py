"""max_time: a training-time budget that stops cleanly, keeps the weights, and resumes from a checkpoint."""

import datetime

import numpy as np
import pytest
import torch

import skssl._training as training
from skssl import RotationSSL
from skssl.datasets import load_digits_images


@pytest.fixture(scope="module")
def X():
    return load_digits_images(return_X_y=True)[0][:64]


@pytest.mark.parametrize("budget", [1e-6, datetime.timedelta(microseconds=1)], ids=["seconds", "timedelta"])
def test_a_spent_budget_stops_after_the_batch_and_records_how_far_it_got(X, budget):
    untrained = RotationSSL(max_epochs=1, batch_size=16, random_state=0, lr=1e-12).fit(X)
    est = RotationSSL(max_epochs=5, batch_size=16, random_state=0, max_time=budget).fit(X)
    assert len(est.history_) == 1
    assert est.history_[0]["stopped"] == "max_time" and est.history_[0]["batches"] == 1
    assert "interrupted" not in est.history_[0]
    changed = [not torch.equal(a, b) for a, b in zip(est.networks_.state_dict().values(),
                                                       untrained.networks_.state_dict().values())]
    assert any(changed)  # the one step it took is kept
    assert est.transform(X).shape == (64, est.embedding_dim_)


def test_a_stopped_checkpointed_fit_resumes_mid_epoch_and_ends_as_an_uninterrupted_one(X, tmp_path, monkeypatch):
    params = dict(max_epochs=3, batch_size=16, random_state=0)  # 4 steps per epoch
    reference = RotationSSL(**params).fit(X)
    clock = iter(range(10_000))  # one second per look at the clock: the budget runs out after step 6
    monkeypatch.setattr(training, "_now", lambda: float(next(clock)))
    stopped = RotationSSL(**params, max_time=5.5, checkpoint_dir=str(tmp_path)).fit(X)
    assert [r.get("batches") for r in stopped.history_] == [None, 2] and stopped.history_[1]["stopped"] == "max_time"
    monkeypatch.undo()
    resumed = RotationSSL(**params, checkpoint_dir=str(tmp_path)).fit(X)
    assert len(resumed.history_) == 3 and "stopped" not in resumed.history_[1]
    np.testing.assert_allclose([r["loss"] for r in resumed.history_], [r["loss"] for r in reference.history_], rtol=1e-6)
    for key, value in reference.networks_.state_dict().items():
        torch.testing.assert_close(resumed.networks_.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_max_time_is_validated():
    with pytest.raises(ValueError, match="max_time"):
        RotationSSL(max_time=-1).fit(np.zeros((4, 64)))
