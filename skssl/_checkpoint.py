"""Training checkpoints: where they live, how they are written and verified.

A checkpoint holds the whole training state (every network with its buffers,
so memory banks and queues too; optimiser; schedule; history; RNG states) and
is read with ``weights_only=True``. Its file name is keyed by the estimator's
parameters and a fingerprint of the data, so GridSearchCV workers never share
a file; inside, the same keys are stored and checked again on resume.
"""

import os
import tempfile

import joblib
import torch
from torch import nn

# Parameters that change how a fit is run or shown, not what it computes.
_NOT_KEYED = {"verbose", "device", "checkpoint_dir", "checkpoint_every", "warm_start", "num_workers", "max_time"}


def _plain(value):
    """A stand-in for ``value`` that hashes by content (modules by their weights)."""
    if isinstance(value, nn.Module):
        # a lazy module's parameters are unsized until its first call: they hash as such
        return (type(value).__qualname__, {k: "uninitialized" if nn.parameter.is_lazy(v) else v.cpu().numpy()
                                           for k, v in value.state_dict().items()})
    return value


def parameter_key(estimator):
    params = estimator.get_params(deep=False)
    return joblib.hash({k: _plain(v) for k, v in sorted(params.items()) if k not in _NOT_KEYED})


def data_key(X):
    return joblib.hash(X)


def checkpoint_path(estimator, data_fingerprint):
    name = f"{type(estimator).__name__}-{parameter_key(estimator)[:12]}-{data_fingerprint[:12]}.pt"
    return os.path.join(estimator.checkpoint_dir, name)


def atomic_save(path, state):
    """``torch.save`` atomically: a crash mid-write leaves the previous file intact."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path, estimator, data_fingerprint):
    """The checkpoint at ``path`` if it belongs to this fit, else a clear error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Checkpoint {path} could not be read ({exc}); delete it to start over.") from exc
    name = type(estimator).__name__
    if state.get("class") != name or state.get("parameter_key") != parameter_key(estimator):
        raise ValueError(
            f"Checkpoint {path} was written by {state.get('class')} with other parameters than this "
            f"{name}; refusing to mix them. Use another checkpoint_dir or delete the file."
        )
    if state.get("data_key") != data_fingerprint:
        raise ValueError(f"Checkpoint {path} was written for other training data; refusing to resume from it.")
    return state
