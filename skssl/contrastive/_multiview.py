"""The shared base of joint-embedding methods: augmented views of each image."""

from sklearn.utils._param_validation import StrOptions

from ..augment import Augment
from ..base import BaseSSL


class MultiViewSSL(BaseSSL):
    """A method that trains on several random views of every image.

    Subclasses call :meth:`_views` for their views; ``augment`` and ``crop``
    (how crop boxes are drawn) are therefore the same for all of them.
    """

    _params = {"augment": None, "crop": "random"}
    _parameter_constraints = {**BaseSSL._parameter_constraints, "augment": [Augment, None], "crop": [StrOptions({"random"})]}

    def _default_augment(self, image_size, channels):
        return Augment.simclr(min(image_size), channels)

    def _views(self, x, n_views=2):
        """``n_views`` independent augmentations of the batch ``x``."""
        return [self._augment(x) for _ in range(n_views)]
