"""DINO: self-distillation with no labels, a momentum teacher, centring and sharpening."""

from numbers import Integral, Real

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval
from torch import nn

from ._momentum import cosine_momentum, ema_update_, frozen_copy
from ._multiview import MultiCropSSL
from .. import _distributed
from ..augment import Augment
from ..backbones import build_backbone
from ..losses import dino_loss


class DINOHead(nn.Module):
    """DINO's head: a 3-layer GELU MLP to a bottleneck, L2 normalisation, a weight-normalised linear layer.

    The last layer's rows are normalised to unit length on every call, which
    is ``nn.utils.weight_norm`` with its gain fixed at 1 (the paper's
    ``norm_last_layer=True``, which it found to stabilise training).
    """

    def __init__(self, in_dim, hidden_dim, bottleneck_dim, out_dim, use_bn=False):
        super().__init__()
        norm = (lambda: nn.BatchNorm1d(hidden_dim)) if use_bn else nn.Identity
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), norm(), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 norm(), nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):  # as the authors': truncated normal, std 0.02
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.kaiming_uniform_(self.last_layer, a=5 ** 0.5)  # nn.Linear's default

    def forward(self, x, freeze_last_layer=False):
        weight = F.normalize(self.last_layer, dim=1)
        return F.linear(F.normalize(self.mlp(x), dim=1), weight.detach() if freeze_last_layer else weight)


class _Center(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.register_buffer("center", torch.zeros(dim))


class DINO(MultiCropSSL):
    """Self-distillation with no labels: a student matches a momentum teacher across crops.

    Follows Caron et al. (ICCV 2021): the student (backbone and DINO head)
    sees every crop, global and local; the teacher, an exponential moving
    average of the student with BYOL's cosine momentum schedule, sees the
    global crops only. The teacher's outputs are centred (a running mean of
    its outputs over the global batch of every torchrun process, with
    momentum ``center_momentum``) and sharpened (softmax at a low teacher
    temperature, warming up linearly from ``warmup_teacher_temperature`` to
    ``teacher_temperature`` over the first ``teacher_warmup_fraction`` of
    the steps); each student crop predicts them by cross entropy at
    ``student_temperature``. Centring keeps one dimension from dominating,
    sharpening keeps the outputs from going uniform; together they avoid
    collapse. The last layer gets no gradient during the first epoch.
    ``transform`` returns the student backbone's features.

    Default augmentation (facebookresearch/dino, ``DataAugmentationDINO``):
    two global crops of scale 0.4-1 (BYOL's pair: Gaussian blur p=1.0 on the
    first, blur p=0.1 and solarization p=0.2 on the second) and
    (``n_local_crops="auto"``, from 28 pixels) six local crops of scale
    0.05-0.4 at 96/224 of the working size (blur p=0.5); all get a flip,
    colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8 and grayscale p=0.2 (RGB
    only); blur only above 32 pixels.

    Parameters
    ----------
    out_dim : int, default=1024
        Width of the head's output, the "prototypes" (paper: 65536 on
        ImageNet; solo-learn uses 4096 on CIFAR).
    hidden_dim : int, default=512
        Hidden width of the head's MLP (paper: 2048).
    bottleneck_dim : int, default=128
        Width of the normalised bottleneck before the last layer (paper: 256).
    student_temperature : float, default=0.1
        (paper: 0.1).
    teacher_temperature : float, default=0.07
        Teacher temperature after the warm-up (paper: 0.04 to 0.07).
    warmup_teacher_temperature : float, default=0.04
        Teacher temperature at the start (paper: 0.04).
    teacher_warmup_fraction : float, default=0.3
        Fraction of the steps over which the teacher temperature warms up
        (paper: 30 of 100 epochs).
    center_momentum : float, default=0.9
        Momentum of the teacher's running centre (paper: 0.9).
    base_momentum : float, default=0.99
        Starting EMA momentum of the teacher, rising to 1 along a cosine
        (paper: 0.996 for 100+ ImageNet epochs; runs of a few hundred steps
        need a faster teacher, see :class:`skssl.BYOL`).
    use_bn_in_head : bool, default=True
        BatchNorm after the hidden layers of the head's MLP (the authors'
        ``use_bn_in_head``, off by default for their ViTs). Without it the
        CNN's pooled ReLU features share one direction that the head passes
        on, every image gets nearly the same output, the centre removes it
        and the teacher's targets go uniform: on 512 digits (8 epochs, 256
        outputs, no local crops) the loss reached log K and the teacher's
        per-image entropy 5.53 of log K = 5.55; with it 5.14.
    {multi_crop_parameters}
    {view_parameters}
    backbone : {"auto", "small_cnn", "resnet18_cifar", "resnet18", "resnet50", "vit_tiny", "vit_small"} \
or nn.Module, default="auto"
        ``"auto"`` is ``"vit_tiny"`` from 28 pixels (working size) and the
        small CNN below; the other values are those of every method: the
        CIFAR-stem ResNet-18, the ImageNet-stem ResNets, the ViTs or a
        module of your own (see :class:`skssl.SimCLR`).
    {common_parameters}

    Attributes
    ----------
    local_augment_ : skssl.augment.Augment
        The local crops' pipeline as used (with ``local_crop_scale``).
    {common_attributes}

    Notes
    -----
    ``networks_`` holds ``backbone`` and ``head`` (student, trained),
    ``teacher_backbone`` and ``teacher_head`` (EMA copies) and ``center``.
    The paper also clips gradients (norm 3) and freezes the last layer for
    one epoch; the clipping is left out.

    The defaults (``batch_size=256``, ``lr=1e-3``) are the small CNN's. A
    ViT on a small image set needs more steps than that gives: on 4,000
    Fashion-MNIST images for 3 epochs (45 steps) DINO's ``vit_tiny`` fell
    below the untrained one, while ``batch_size=64, lr=1.25e-4`` (186
    steps; the paper's rule, 5e-4 x batch / 256) put it above the untrained
    ViT and MAE on both probes (kNN 0.565 against 0.527 and 0.552; see
    docs/masked.md).

    Examples
    --------
    >>> from skssl.contrastive.dino import DINO
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> Z = DINO(max_epochs=1, random_state=0).fit_transform(X[:100])
    >>> Z.shape
    (100, 128)
    """

    _params = {"out_dim": 1024, "hidden_dim": 512, "bottleneck_dim": 128, "student_temperature": 0.1,
               "teacher_temperature": 0.07, "warmup_teacher_temperature": 0.04, "teacher_warmup_fraction": 0.3,
               "center_momentum": 0.9, "base_momentum": 0.99, "use_bn_in_head": True, "max_epochs": 30}
    _parameter_constraints = {
        **MultiCropSSL._parameter_constraints,
        "out_dim": [Interval(Integral, 2, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "bottleneck_dim": [Interval(Integral, 1, None, closed="left")],
        "student_temperature": [Interval(Real, 0, None, closed="neither")],
        "teacher_temperature": [Interval(Real, 0, None, closed="neither")],
        "warmup_teacher_temperature": [Interval(Real, 0, None, closed="neither")],
        "teacher_warmup_fraction": [Interval(Real, 0, 1, closed="both")],
        "center_momentum": [Interval(Real, 0, 1, closed="both")],
        "base_momentum": [Interval(Real, 0, 1, closed="both")],
        "use_bn_in_head": ["boolean"],
    }
    # The ViT from this working size on ("auto"); a 7x7 grid of 4-pixel patches at 28 pixels.
    _vit_from = 28

    def _default_augment(self, image_size, channels):
        return Augment.byol(min(image_size), channels)

    def _default_local_augment(self, image_size, channels):
        return Augment._recipe(min(image_size), channels, crop_scale=self.local_crop_scale, saturation=0.2, hue=0.1,
                               blur_p=0.5)

    def _build_networks(self):
        super()._build_networks()
        size, c = self._working_size(), self.image_shape_[2]
        if self.backbone == "auto" and min(size) >= self._vit_from:
            # BaseSSL's "auto" is a CNN at every size; DINO's is the ViT where the image allows a patch grid.
            backbone = build_backbone("vit_tiny", c, size)
            dims = backbone.stage_dims(c, size)
            if not -len(dims) <= self.stage < len(dims):
                raise ValueError(f"stage={self.stage} but the backbone has {len(dims)} stages "
                                 f"(valid: {-len(dims)} to {len(dims) - 1}).")
            self.embedding_dim_ = int(dims[self.stage])
            self.networks_["backbone"] = backbone
            self.networks_.update(self._build_heads(int(dims[-1])))
        self.networks_["teacher_backbone"] = frozen_copy(self.networks_["backbone"])
        self.networks_["teacher_head"] = frozen_copy(self.networks_["head"])

    def _build_heads(self, feature_dim):
        return {"head": DINOHead(feature_dim, self.hidden_dim, self.bottleneck_dim, self.out_dim, self.use_bn_in_head),
                "center": _Center(self.out_dim)}

    def _teacher_temperature(self):
        warmup = self.teacher_warmup_fraction * self._total_steps
        t = min(1.0, self._step / warmup) if warmup > 0 else 1.0
        return self.warmup_teacher_temperature + t * (self.teacher_temperature - self.warmup_teacher_temperature)

    def _loss(self, x):
        nets, n = self.networks_, x.shape[0]
        globals_, locals_ = self._multi_crop_views(x)
        freeze = len(self.history_) < 1
        student = [nets["head"](self._encode(c), freeze) for c in (globals_, locals_) if c is not None]
        student = torch.cat(student).chunk(self.n_global_crops + self._n_local())
        with torch.no_grad():
            teacher = nets["teacher_head"](nets["teacher_backbone"](self._standardize(globals_)))
        center = nets["center"].center
        tau = self._teacher_temperature()
        loss, terms = 0.0, 0
        for i, t in enumerate(teacher.chunk(self.n_global_crops)):
            for v, s in enumerate(student):
                if v != i:  # a crop never predicts itself
                    loss = loss + dino_loss(s, t, center, self.student_temperature, tau)
                    terms += 1
        self._update_center(teacher)
        return loss / terms

    @torch.no_grad()
    def _update_center(self, teacher):
        # The mean over the global batch of every process, so N processes equal one.
        total = _distributed.mean_over_ranks(teacher.float().sum(dim=0)) * _distributed.world()[1]
        count = teacher.shape[0] * _distributed.world()[1]
        center = self.networks_["center"].center
        center.lerp_(total / count, 1.0 - self.center_momentum)

    def _after_step(self):
        m = cosine_momentum(self._step - 1, self._total_steps, self.base_momentum)
        ema_update_(self.networks_["teacher_backbone"], self.networks_["backbone"], m)
        ema_update_(self.networks_["teacher_head"], self.networks_["head"], m)
