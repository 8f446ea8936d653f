"""Shared data of the skssl.semi tests: the digits with 10 labels per class."""

import numpy as np
import pytest

from skssl import RotationSSL
from skssl.datasets import load_digits_images


@pytest.fixture(scope="session")
def digits_few_labels():
    """(X_train, y_train with -1 beyond 10 labels per class, X_test, y_test): 1300 training, 497 held-out images."""
    X, y = load_digits_images(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(X))
    X, y = X[order], y[order]
    X_train, y_train, X_test, y_test = X[:1300], y[:1300], X[1300:], y[1300:]
    labelled = np.concatenate([np.flatnonzero(y_train == c)[:10] for c in range(10)])
    y_few = np.full(len(y_train), -1)
    y_few[labelled] = y_train[labelled]
    return X_train, y_few, X_test, y_test


@pytest.fixture(scope="session")
def rotation_digits(digits_few_labels):
    """RotationSSL pretrained on every training image (3 epochs, small CNN)."""
    return RotationSSL(max_epochs=3, batch_size=128, random_state=0).fit(digits_few_labels[0])


@pytest.fixture(scope="session")
def small_xy():
    """120 digits, half of them unlabelled."""
    X, y = load_digits_images(return_X_y=True)
    X, y = X[:120], y[:120].copy()
    y[1::2] = -1
    return X, y
