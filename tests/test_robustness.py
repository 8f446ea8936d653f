"""Fits that survive: SIGKILL + resume, Ctrl-C, divergence, out-of-memory."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
import torch

from skssl import RotationSSL, SimCLR
from skssl.datasets import load_digits_images


@pytest.fixture(scope="module")
def X():
    return load_digits_images(return_X_y=True)[0][:96]


def test_sigkill_mid_training_then_refit_resumes_from_the_last_checkpoint(X, tmp_path):
    data, ckpt, log = tmp_path / "X.npy", tmp_path / "ckpt", tmp_path / "epochs.log"
    np.save(data, X)
    params = dict(max_epochs=8, batch_size=32, random_state=0, checkpoint_dir=str(ckpt), checkpoint_every=2)
    # The child logs each epoch it starts and fits until it is killed.
    child = textwrap.dedent(f"""
        import numpy as np
        import torch
        torch.set_num_threads(1)  # as this process: the same arithmetic, so resuming can match exactly
        from skssl import RotationSSL
        class Logged(RotationSSL):
            def _before_epoch(self, images, epoch):
                with open({str(log)!r}, "a") as f:
                    f.write(f"{{epoch}}\\n")
        Logged.__name__ = "RotationSSL"
        Logged(**{params!r}).fit(np.load({str(data)!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = [int(e) for e in log.read_text().split()]
    assert 4 <= len(started) < 8, "the child must be killed mid-training"
    files = [f for f in os.listdir(ckpt) if not f.startswith(".tmp")]
    assert len(files) == 1
    saved = torch.load(ckpt / files[0], weights_only=True)
    completed_before_kill = len(started) - 1
    assert completed_before_kill - len(saved["history"]) <= 2  # at most one interval lost

    resumed = RotationSSL(**params).fit(X)
    assert [h["epoch"] for h in resumed.history_] == list(range(1, 9))
    # The killed run's records, timings included, open the history: a fit that
    # ignored the checkpoint and trained from scratch would time its own epochs.
    assert saved["history"] and resumed.history_[:len(saved["history"])] == saved["history"]
    # Resuming reproduces the uninterrupted fit exactly (same seed, CPU).
    uninterrupted = RotationSSL(**{**params, "checkpoint_dir": None}).fit(X)
    np.testing.assert_allclose(resumed.transform(X), uninterrupted.transform(X), rtol=1e-5, atol=1e-6)


def test_the_data_key_depends_on_the_values_not_the_memory_layout(X):
    from skssl import _checkpoint

    assert not X.flags["C_CONTIGUOUS"]  # load_digits_images gives a view, as the SIGKILL test's parent fits
    assert _checkpoint.data_key(X) == _checkpoint.data_key(np.ascontiguousarray(X)) == _checkpoint.data_key(np.asfortranarray(X))
    assert _checkpoint.data_key(X) != _checkpoint.data_key(X[::-1])


def test_checkpoint_with_other_parameters_is_refused(X, tmp_path):
    RotationSSL(max_epochs=1, batch_size=32, random_state=0, checkpoint_dir=str(tmp_path)).fit(X)
    (written,) = os.listdir(tmp_path)
    other = RotationSSL(max_epochs=1, batch_size=32, random_state=1, checkpoint_dir=str(tmp_path))
    # Put the first fit's file where the second fit looks for its own.
    from skssl import _checkpoint

    target = _checkpoint.checkpoint_path(other, _checkpoint.data_key(X.reshape(len(X), -1)))
    os.replace(tmp_path / written, target)
    with pytest.raises(ValueError, match="other parameters.*refusing to mix"):
        other.fit(X)


def test_grid_search_workers_get_separate_checkpoint_files(X, tmp_path):
    for seed in (0, 1):
        RotationSSL(max_epochs=1, batch_size=32, random_state=seed, checkpoint_dir=str(tmp_path)).fit(X)
    RotationSSL(max_epochs=1, batch_size=32, random_state=0, checkpoint_dir=str(tmp_path)).fit(X[:64])
    assert len(os.listdir(tmp_path)) == 3


def test_ctrl_c_keeps_the_partly_trained_model(X):
    est = SimCLR(max_epochs=10_000, batch_size=16, random_state=0)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.warns(UserWarning, match="interrupted in epoch"):
        est.fit(X)
    timer.cancel()
    assert 1 <= len(est.history_) < 10_000
    assert est.history_[-1]["interrupted"] is True
    Z = est.transform(X)
    assert Z.shape == (len(X), est.embedding_dim_) and np.isfinite(Z).all()


def test_keyboard_interrupt_raised_inside_training_stops_cleanly(X):
    class InterruptedAtStep5(RotationSSL):
        def _after_step(self):
            if self._step == 5:
                raise KeyboardInterrupt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = InterruptedAtStep5(max_epochs=50, batch_size=16, random_state=0).fit(X)
    assert sum("interrupted" in str(w.message) for w in caught) == 1
    assert est.history_[-1]["interrupted"] and est.history_[-1]["epoch"] == 1
    assert np.isfinite(est.transform(X)).all()


def test_divergence_names_epoch_and_batch_and_keeps_finite_weights(X):
    est = RotationSSL(max_epochs=5, batch_size=16, lr=1e12, optimizer="sgd", random_state=0)
    with pytest.raises(FloatingPointError, match=r"epoch \d+, batch \d+.*lower learning rate"):
        est.fit(X)
    weights = est.networks_.state_dict().values()
    assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point())
    assert np.isfinite(est.transform(X)).all()


def test_out_of_memory_at_the_first_batch_halves_the_batch_size(X):
    class Needs16OrFewer(RotationSSL):
        def _loss(self, x):
            if x.shape[0] > 16:
                raise torch.OutOfMemoryError("simulated")
            return super()._loss(x)

    with pytest.warns(UserWarning, match="batch_size=16"):
        est = Needs16OrFewer(max_epochs=1, batch_size=64, random_state=0).fit(X)
    assert len(est.history_) == 1

    class NeverFits(RotationSSL):
        def _loss(self, x):
            raise torch.OutOfMemoryError("simulated")

    with pytest.warns(UserWarning), pytest.raises(MemoryError, match="ran out of cpu memory at batch_size=2"):
        NeverFits(max_epochs=1, batch_size=8, random_state=0).fit(X)


def test_checkpoint_from_another_device_type_resumes_and_a_mismatched_one_is_named(X, tmp_path):
    params = dict(max_epochs=2, batch_size=32, random_state=0, checkpoint_dir=str(tmp_path))
    first = RotationSSL(**params).fit(X)
    (path,) = [p for p in tmp_path.iterdir() if p.suffix == ".pt"]
    state = torch.load(path, weights_only=True)
    # A CUDA generator's state has another size than the CPU one: it is not restored, and no crash.
    state["rng_device"] = torch.zeros(16, dtype=torch.uint8)
    state["rng_device_per_rank"] = [torch.zeros(16, dtype=torch.uint8)]
    state["rng_cuda"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, path)
    again = RotationSSL(**params).fit(X)
    assert again.history_ == first.history_
    state["networks"] = {k + "_renamed": v for k, v in state["networks"].items()}  # another version's layout
    torch.save(state, path)
    with pytest.raises(ValueError, match="does not match its networks.*Delete it"):
        RotationSSL(**params).fit(X)
