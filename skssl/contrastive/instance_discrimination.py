"""Instance discrimination (NPID): every image is its own class, with a memory bank."""

import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._memory import MemoryBank
from ._multiview import MultiViewSSL
from ..losses import fp32_loss


@fp32_loss
def nce_loss(positive, negatives, log_z, n_data, ignore=None):
    """NPID's noise-contrastive estimation loss (Wu et al. 2018, eq. 6-7).

    With ``P(i|v) = exp(logit) / Z`` and the uniform noise ``Pn = 1 / n_data``,
    ``h = P / (P + k Pn)``; the loss is ``-log h`` for the positive plus
    ``-log(1 - h)`` for each of the ``k`` noise samples, averaged over anchors.
    Computed in log space (softplus), so large logits do not overflow.

    Parameters
    ----------
    positive : Tensor of shape (B,)
        Logits (similarity / temperature) of each anchor with its own image.
    negatives : Tensor of shape (B, k)
        Logits of each anchor with the ``k`` noise samples.
    log_z : float or Tensor
        Log of the normalising constant Z.
    n_data : int
        Size of the data set (of the memory bank).
    ignore : BoolTensor of shape (B, k), optional
        Noise samples to leave out (an anchor's own row drawn as noise).

    Returns
    -------
    Tensor, scalar
    """
    k = negatives.shape[1]
    if k < 1 or n_data < 1:
        raise ValueError(f"nce_loss needs at least one noise sample and n_data >= 1; got k={k}, n_data={n_data}.")
    log_noise = math.log(k / n_data)
    loss_pos = F.softplus(log_noise - (positive.float() - log_z))
    loss_neg = F.softplus(negatives.float() - log_z - log_noise)
    if ignore is not None:
        loss_neg = loss_neg.masked_fill(ignore, 0.0)
    return (loss_pos + loss_neg.sum(1)).mean()


@fp32_loss
def bank_nce_loss(anchor, bank, index, n_negatives, temperature, generator):
    """NCE of unit ``anchor`` rows against their own bank rows and sampled bank rows.

    Shared by NPID and PIRL; estimates the bank's ``log Z`` on first use.
    """
    positive = (anchor * bank.features.index_select(0, index)).sum(1) / temperature
    noise = bank.sample_negatives(n_negatives, generator)
    negatives = anchor @ bank.features.index_select(0, noise).T / temperature
    log_z = bank.log_normaliser(torch.cat([positive[:, None], negatives], 1))
    return nce_loss(positive, negatives, log_z, len(bank), ignore=noise[None, :] == index[:, None])


@fp32_loss
def instance_softmax_loss(anchor, bank_features, index, temperature):
    """NPID's non-parametric softmax: ``-log softmax(anchor @ bank.T / T)[own row]``."""
    return F.cross_entropy(anchor.float() @ bank_features.T / temperature, index)


class _MemoryBankLoss:
    """What NPID and PIRL share: a bank of one embedding per training image (``_bank_embedding``).

    The bank is filled before the first epoch (and when a warm start brings a
    set of another size), contrasted against with ``loss`` and written after
    each optimiser step, once backward no longer needs it.
    """

    def _before_epoch(self, images, epoch):
        super()._before_epoch(images, epoch)  # ContrastiveCrop's box refresh
        bank = self.networks_["memory"]
        if len(bank) != len(images):
            bank.fill(torch.from_numpy(self._map_images(images, self._bank_embedding)))

    def _contrast(self, anchor):
        bank, index = self.networks_["memory"], self._batch_index
        if self.loss == "softmax":
            return instance_softmax_loss(anchor, bank.features, index, self.temperature)
        return bank_nce_loss(anchor, bank, index, self.n_negatives, self.temperature, self._generator)

    def _after_step(self):
        # Under torchrun every process writes every process's rows, so the banks stay equal.
        self.networks_["memory"].update(self._gather(self._batch_index), self._gather(self.__dict__.pop("_bank_update")),
                                        self.bank_momentum)


class InstanceDiscriminationSSL(_MemoryBankLoss, MultiViewSSL):
    """Unsupervised feature learning by non-parametric instance discrimination (NPID).

    Follows Wu, Xiong, Yu & Lin (CVPR 2018): every training image is its own
    class. A linear projection maps backbone features to a low-dimensional
    unit vector ``v``; a memory bank keeps one such vector per image, updated
    as ``normalise(m * bank[i] + (1 - m) * v_i)`` after each step, and the
    loss classifies ``v_i`` as its own bank row among all others (``loss=
    "softmax"``) or tells it apart from ``n_negatives`` noise rows (``loss=
    "nce"``, the paper's choice for large data, with Z estimated once from
    the first batch). ``transform`` returns backbone features, before the
    projection, as the paper evaluates. Negatives are shared by the batch
    and an image's own row is never its negative.

    Each image is augmented once per step, by default with MoCo v2's recipe
    (:meth:`skssl.augment.Augment.moco_v2`: crop scale 0.2-1, as NPID's,
    colour jitter (0.4, 0.4, 0.4, hue 0.1) with p=0.8, grayscale p=0.2,
    blur p=0.5 above 32 pixels, flip).

    Parameters
    ----------
    projection_dim : int, default=128
        Width of the unit embeddings in the memory bank.
    temperature : float, default=0.07
        Softmax temperature of the non-parametric softmax over the memory bank.
    bank_momentum : float, default=0.5
        Weight of the old bank row in its update.
    loss : {"softmax", "nce"}, default="softmax"
        ``"softmax"`` uses the whole bank each step: exact (the paper's
        Table 1 finds it better than NCE) and cheap for up to some 10^5
        images. ``"nce"`` is the paper's approximation for ImageNet scale;
        its Z, fixed at the first batch, underestimates the true Z as the
        embedding learns, which on small data sets makes the loss rise.
    n_negatives : int, default=4096
        Noise samples per step for ``loss="nce"``.
    {view_parameters}
    {common_parameters}

    Attributes
    ----------
    {common_attributes}

    Notes
    -----
    The memory bank (``networks_["memory"]``) belongs to the training set: a
    warm start on a set of another size refills it with the current network's
    embeddings of the new images.

    Examples
    --------
    >>> from skssl.contrastive.instance_discrimination import InstanceDiscriminationSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = InstanceDiscriminationSSL(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"projection_dim": 128, "temperature": 0.07, "bank_momentum": 0.5, "loss": "softmax",
               "n_negatives": 4096, "max_epochs": 30}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "bank_momentum": [Interval(Real, 0, 1, closed="both")],
        "loss": [StrOptions({"nce", "softmax"})],
        "n_negatives": [Interval(Integral, 1, None, closed="left")],
    }

    def _build_heads(self, feature_dim):
        return {"projector": nn.Linear(feature_dim, self.projection_dim),
                "memory": MemoryBank(self._n_train, self.projection_dim)}

    def _embed(self, x):
        return F.normalize(self.networks_["projector"](self._encode(x)).float(), dim=1)

    _bank_embedding = _embed

    def _loss(self, x):
        v = self._embed(self._views(x, 1)[0])
        self._bank_update = v.detach()  # written in _after_step: the softmax loss still needs the bank
        return self._contrast(v)
