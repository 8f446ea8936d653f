"""Baselines that every self-supervised method should beat."""

from .base import BaseSSL


class RandomInit(BaseSSL):
    """The backbone as initialised, never trained: the floor for any pretext task.

    Fitting only reads the input statistics (shape, scale, per-channel mean and
    std) and builds the backbone with seeded random weights; ``transform``
    returns its features exactly as a trained method would. ``max_epochs``,
    ``lr`` and the other training parameters are accepted but unused, so it
    can stand in any Pipeline or GridSearchCV next to the real methods.

    Parameters
    ----------
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.baselines import RandomInit
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> RandomInit(random_state=0).fit_transform(X).shape
    (1797, 128)
    """

    _trains = False
