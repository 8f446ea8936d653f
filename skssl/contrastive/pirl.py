"""PIRL: a representation invariant to the jigsaw transform, learned with a memory bank."""

from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._tiles import grid_tiles, max_hamming_permutations
from ._memory import MemoryBank
from ._multiview import MultiViewSSL
from .instance_discrimination import _MemoryBankLoss

GRID = 3


class PIRL(_MemoryBankLoss, MultiViewSSL):
    """Pretext-invariant representation learning (PIRL) with the jigsaw transform.

    Follows Misra & van der Maaten (CVPR 2020). An image ``I`` gives
    ``f(v_I)``: backbone features through a linear projection. Its jigsaw
    transform ``I_t`` (a 3x3 grid of jittered tiles with gaps, put in one of
    ``n_permutations`` maximally different orders) gives ``g(v_It)``: every
    tile through the same backbone and a linear projection, the tile vectors
    concatenated in the permuted order, and a second linear layer. A memory
    bank keeps ``m_I``, a moving average of ``f(v_I)``; the loss is
    ``lambda * L(m_I, g(v_It)) + (1 - lambda) * L(m_I, f(v_I))`` where ``L``
    contrasts the pair with other images' bank rows. ``transform`` returns
    backbone features of the whole image.

    The image and the tiles come from two independent augmentations of each
    image, by default MoCo v2's recipe (:meth:`skssl.augment.Augment.moco_v2`:
    crop scale 0.2-1, colour jitter (0.4, 0.4, 0.4, hue 0.1) with p=0.8,
    grayscale p=0.2, blur p=0.5 above 32 pixels, flip). Images are upsampled
    to at least 18 pixels so tiles have 5.

    Parameters
    ----------
    projection_dim : int, default=128
        Width of ``f`` and ``g``, and of the memory bank rows.
    temperature : float, default=0.07
        Softmax temperature of the contrastive loss.
    loss_weight : float, default=0.5
        ``lambda``, the weight of the image-vs-jigsaw term (the paper's 0.5).
    bank_momentum : float, default=0.5
        Weight of the old bank row in its update.
    loss : {"softmax", "nce"}, default="softmax"
        ``"softmax"``: every bank row is a negative (exact; cheap for up to
        some 10^5 images). ``"nce"``: the paper's NCE with ``n_negatives``
        bank rows and Z estimated once from the first batch; on small data
        sets that fixed Z falls behind the true one as training proceeds and
        the loss rises (see :class:`InstanceDiscriminationSSL`).
    n_negatives : int, default=4096
        Bank rows drawn per step for ``loss="nce"`` (the paper: 32000).
    n_permutations : int, default=100
        Size of the set of tile orders.
    gap : float, default=0.1
        Fraction of each grid cell left out of its tile.
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Examples
    --------
    >>> from skssl.contrastive.pirl import PIRL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = PIRL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"projection_dim": 128, "temperature": 0.07, "loss_weight": 0.5, "bank_momentum": 0.5, "loss": "softmax",
               "n_negatives": 4096, "n_permutations": 100, "gap": 0.1, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "loss_weight": [Interval(Real, 0, 1, closed="both")],
        "bank_momentum": [Interval(Real, 0, 1, closed="both")],
        "loss": [StrOptions({"nce", "softmax"})],
        "n_negatives": [Interval(Integral, 1, None, closed="left")],
        "n_permutations": [Interval(Integral, 1, 362880, closed="both")],
        "gap": [Interval(Real, 0, 1, closed="left")],
    }
    _min_image_size = 18

    def _build_heads(self, feature_dim):
        d = self.projection_dim
        return {"image_head": nn.Linear(feature_dim, d), "tile_head": nn.Linear(feature_dim, d),
                "jigsaw_head": nn.Linear(GRID * GRID * d, d), "memory": MemoryBank(self._n_train, d)}

    def _image_embedding(self, x):
        return F.normalize(self.networks_["image_head"](self._encode(x)).float(), dim=1)

    def _jigsaw_embedding(self, x):
        tiles = grid_tiles(x, GRID, self.gap, jitter=True, generator=self._generator)  # (B, 9, C, t, t)
        b, k = tiles.shape[:2]
        # PIRL's own choice of orders; "min" keeps the set it was trained with before.
        orders = max_hamming_permutations(self.n_permutations, k, seed=0, selection="min").to(x.device)
        order = orders[torch.randint(len(orders), (b,), generator=self._generator, device=x.device)]
        tiles = tiles[torch.arange(b, device=x.device)[:, None], order]
        per_tile = self.networks_["tile_head"](self._encode(tiles.flatten(0, 1)))
        return F.normalize(self.networks_["jigsaw_head"](per_tile.reshape(b, -1)).float(), dim=1)

    def _bank_embedding(self, x):
        return self._image_embedding(x)

    def _loss(self, x):
        x_image, x_tiles = self._views(x)
        image = self._image_embedding(x_image)
        jigsaw = self._jigsaw_embedding(x_tiles)
        self._bank_update = image.detach()  # written in _after_step, after backward has used the bank
        return self.loss_weight * self._contrast(jigsaw) + (1 - self.loss_weight) * self._contrast(image)
