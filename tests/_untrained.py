"""Switch training off: the same fit with every optimiser step a no-op.

A learning test compares a fit with the same fit under :func:`no_optimizer_step`:
the data, seeds, augmentations, BatchNorm statistics, memory banks and queues
all go through the same motions, only the weights never move. What a method
claims to learn must then be missing.
"""

import contextlib
import types

from skssl.base import BaseSSL


@contextlib.contextmanager
def no_optimizer_step():
    """Within this block every estimator's optimiser computes gradients but never updates a weight."""
    real = BaseSSL._make_optimizer

    def make_optimizer(self, params):
        optimizer = real(self, params)
        # A bound method: the LR scheduler wraps ``optimizer.step`` through its ``__func__``.
        optimizer.step = types.MethodType(lambda opt, *args, **kwargs: None, optimizer)
        return optimizer

    BaseSSL._make_optimizer = make_optimizer
    try:
        yield
    finally:
        BaseSSL._make_optimizer = real


def fit_both(make, X):
    """``(trained, untrained)``: ``make()`` fitted on X normally and with no optimiser step."""
    trained = make().fit(X)
    with no_optimizer_step():
        untrained = make().fit(X)
    return trained, untrained


def held_out_knn(est, X, y, X_test, y_test):
    """kNN accuracy on held-out images, with the embeddings of the training images as neighbours."""
    from skssl.evaluation import knn_score

    return knn_score(est, X, y, X_test=X_test, y_test=y_test)
