"""The network every classifier of :mod:`skssl.semi` trains: a backbone and a classification head.

:class:`ClassifierNetwork` is a private :class:`skssl.base.BaseSSL` subclass,
so fine-tuning, distillation and Noisy Student train through the one training
loop (devices, bf16, checkpoints and resume, Ctrl-C, divergence handling,
torchrun). Its "pretext" is classification: before ``fit`` the public
classifier hands it, per training image, a target distribution (one-hot
labels, soft pseudo-labels or a teacher's softened outputs) and optionally a
hard label; ``_loss`` reads the rows of the current batch through
``self._batch_index``. Those targets are hashed into the ``target_key``
parameter, so a checkpoint never resumes a fit with other targets.
"""

import copy
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..augment import Augment
from ..backbones import pool
from ..base import BaseSSL


def _residual_blocks():
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return (BasicBlock, Bottleneck)


class ClassifierNetwork(BaseSSL):
    """Backbone plus classification head, trained on per-image targets (private).

    Parameters beyond the common ones: ``n_classes``; ``head`` ("linear" on
    the embedding of ``stage``, or "projection": a Linear-BN-ReLU layer of
    width ``head_hidden_dim_`` on the last stage, then a linear layer, as
    SimCLRv2 fine-tunes from the projector's first layer); ``dropout`` before
    the last linear layer; ``drop_path`` (stochastic depth: the largest rate,
    reached by the last residual block); ``temperature`` dividing the logits
    in the soft-target loss; ``alpha``, the weight of the hard-label loss;
    ``backbone_lr_scale``; ``freeze_stages`` (leading backbone stages kept
    fixed, their BatchNorm statistics too); ``target_key``.
    """

    _params = {"n_classes": 2, "head": "linear", "dropout": 0.0, "drop_path": 0.0, "augment": None,
               "temperature": 1.0, "alpha": 0.0, "backbone_lr_scale": 1.0, "freeze_stages": 0,
               "target_key": None}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "head": [StrOptions({"linear", "projection"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "drop_path": [Interval(Real, 0, 1, closed="left")],
        "augment": [Augment, None],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "backbone_lr_scale": [Interval(Real, 0, None, closed="left")],
        "freeze_stages": [Interval(Integral, 0, None, closed="left")],
        "target_key": [str, None],
    }

    # ------------------------------------------------------------- networks
    def _build_heads(self, feature_dim):
        if self.head == "linear":
            return {"classifier": nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.embedding_dim_, self.n_classes))}
        hidden = int(self.head_hidden_dim_)
        return {"classifier": nn.Sequential(
            nn.Linear(feature_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Dropout(self.dropout), nn.Linear(hidden, self.n_classes))}

    def _initialise(self, images):
        """Fresh networks, then the pretrained weights and input statistics of ``_reference`` (if any).

        The fine-tuned backbone must see its inputs standardised exactly as
        during pretraining, so the statistics are the SSL estimator's, not
        those of the (labelled) subset trained on here.
        """
        reference = getattr(self, "_reference", None)
        if reference is not None and tuple(reference.image_shape_) != tuple(self.image_shape_):
            raise ValueError(f"X holds images of shape {self.image_shape_} (h, w, c) but the SSL estimator "
                             f"{type(reference).__name__} was fitted on {tuple(reference.image_shape_)}.")
        if reference is not None and self.head == "projection":
            self.head_hidden_dim_ = _projection_layer(reference)[0].out_features
        super()._initialise(images)
        if reference is not None:
            self.channel_mean_ = np.array(reference.channel_mean_, dtype=np.float32)
            self.channel_std_ = np.array(reference.channel_std_, dtype=np.float32)
            self.networks_["backbone"].load_state_dict(reference.networks_["backbone"].state_dict())
            if self.head == "projection":
                first = nn.Sequential(*_projection_layer(reference))
                self.networks_["classifier"][:3].load_state_dict(first.state_dict())
        head_init = getattr(self, "_head_init", None)
        if head_init is not None:
            last = self.networks_["classifier"][-1]
            with torch.no_grad():
                last.weight.copy_(torch.as_tensor(head_init[0], dtype=last.weight.dtype))
                last.bias.copy_(torch.as_tensor(head_init[1], dtype=last.bias.dtype))
        n_stages = len(self.networks_["backbone"].stages)
        if self.freeze_stages > n_stages:
            raise ValueError(f"freeze_stages={self.freeze_stages} but the backbone has {n_stages} stages.")
        frozen = self.networks_["backbone"].stages[: self.freeze_stages]
        for p in frozen.parameters():
            p.requires_grad_(False)

    def _fit_scale(self, source):
        # The backbone was pretrained on the reference's scaling of the pixels;
        # a labelled subset of float images may span another range.
        reference = getattr(self, "_reference", None)
        return super()._fit_scale(source) if reference is None else tuple(reference.scale_)

    def _make_optimizer(self, params):
        optimizer = super()._make_optimizer(params)
        if self.backbone_lr_scale == 1:
            return optimizer
        backbone = {id(p) for p in self.networks_["backbone"].parameters()}
        groups, optimizer.param_groups = optimizer.param_groups, []
        for group in groups:
            for in_backbone in (True, False):
                chosen = [p for p in group["params"] if (id(p) in backbone) == in_backbone]
                if chosen:
                    scale = self.backbone_lr_scale if in_backbone else 1.0
                    optimizer.add_param_group({"params": chosen, "weight_decay": group["weight_decay"],
                                               "lr": self.lr * scale})
        return optimizer

    # --------------------------------------------------------------- forward
    def _features(self, x):
        """Pooled features the head reads; residual blocks are dropped at random while training."""
        stage = -1 if self.head == "projection" else self.stage
        backbone = self.networks_["backbone"]
        if not (self._training_blocks and self.drop_path > 0):
            return backbone(self._standardize(x), stage)
        blocks = _residual_blocks()
        last = stage % len(backbone.stages)
        n_blocks = sum(isinstance(m, blocks) for m in backbone.stages[: last + 1].modules())
        h, seen = self._standardize(x), 0
        for stage_module in backbone.stages[: last + 1]:
            children = list(stage_module.children()) if isinstance(stage_module, nn.Sequential) else [stage_module]
            if not any(isinstance(c, blocks) for c in children):
                h = stage_module(h)
                continue
            for child in children:
                if not isinstance(child, blocks):
                    h = child(h)
                    continue
                seen += 1
                # Stochastic depth (Huang et al. 2016) with the linear decay rule: block l of L is
                # skipped (replaced by its shortcut) with probability drop_path * l / L.
                rate = self.drop_path * seen / n_blocks
                keep = torch.rand(h.shape[0], device=h.device, generator=self._generator) >= rate
                shortcut = child.downsample(h) if child.downsample is not None else h
                h = torch.where(keep.view(-1, 1, 1, 1), child(h), shortcut)
        return pool(h)

    @property
    def _training_blocks(self):
        return self.networks_.training and getattr(self, "_generator", None) is not None

    def _logits(self, x):
        return self.networks_["classifier"](self._features(x))

    # ------------------------------------------------------------ training
    def _before_epoch(self, images, epoch):
        device = self._generator.device
        self._soft_targets = self._soft_targets.to(device)
        self._hard_targets = self._hard_targets.to(device)

    def _loss(self, x):
        for stage in self.networks_["backbone"].stages[: self.freeze_stages]:
            stage.eval()  # frozen means frozen: BatchNorm statistics too
        logits = self._logits(self._augment(x))
        index = self._batch_index
        with torch.autocast(x.device.type, enabled=False):
            logits = logits.float()
            loss = logits.new_zeros(())
            if self.alpha < 1:
                soft = self._soft_targets[index]
                loss = loss + (1 - self.alpha) * -(soft * F.log_softmax(logits / self.temperature, 1)).sum(1).mean()
            if self.alpha > 0:
                hard = self._hard_targets[index]
                labelled = hard >= 0  # unlabelled rows (-1) never enter the supervised loss
                per_row = F.cross_entropy(logits, hard.clamp(min=0), reduction="none")
                loss = loss + self.alpha * (per_row * labelled).sum() / labelled.sum().clamp(min=1)
        return loss

    # ------------------------------------------------------------ inference
    # Prediction batches are zero-padded to this many images: float32 convolutions on the CPU
    # round differently with the batch's size, and an image's prediction must not depend on
    # how many others it is predicted with.
    _inference_batch = 64

    def _padded_features(self, x):
        n = x.shape[0]
        if n < self._inference_batch:
            x = torch.cat([x, x.new_zeros((self._inference_batch - n, *x.shape[1:]))])
        return self._features(x)[:n]

    def decision(self, X):
        """Logits of validated input ``X`` (numpy, float64).

        The head runs in float64 on the CPU over all rows at once: in float32
        its matrix product rounds differently with the batch's size, and a
        prediction must not depend on which other images it is made with.
        """
        features = torch.from_numpy(self._map_batches(X, self._padded_features, self._inference_batch)).double()
        head = copy.deepcopy(self.networks_["classifier"]).cpu().double().eval()
        with torch.inference_mode():
            return head(features).numpy()


def probe_head(features, codes, n_classes):
    """(weight, bias) of a linear layer from a logistic regression on ``features``: LP-FT's start.

    Kumar et al. (ICLR 2022, "Fine-tuning can distort pretrained features")
    fit the head as a linear probe first and fine-tune from there: a random
    head sends large, arbitrary gradients into the pretrained backbone in the
    first steps, which with few labels undoes much of what it learned.
    """
    from sklearn.linear_model import LogisticRegression

    # Standardised as in skssl's linear probes (pooled features can be tiny, and L2 regularisation
    # would then flatten the probe), then the scaling folded into the layer: w.(z - m)/s + b.
    features = np.asarray(features, dtype=np.float64)
    mean, std = features.mean(0), features.std(0)
    std[std == 0] = 1
    probe = LogisticRegression(max_iter=2000).fit((features - mean) / std, codes)
    coef, intercept = probe.coef_ / std, probe.intercept_ - probe.coef_ @ (mean / std)
    weight = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    if n_classes == 2:  # one logit difference w.z + b, split symmetrically over the two logits
        weight[1], bias[1] = coef[0] / 2, intercept[0] / 2
        weight[0], bias[0] = -weight[1], -bias[1]
    else:
        weight[probe.classes_], bias[probe.classes_] = coef, intercept
    return weight, bias


def _projection_layer(reference):
    """The first Linear-BN-ReLU of an SSL estimator's projection head (SimCLRv2's fine-tuning start)."""
    projector = reference.networks_["projector"] if "projector" in reference.networks_ else None
    layers = list(projector.children())[:3] if isinstance(projector, nn.Sequential) else []
    if len(layers) < 3 or not (isinstance(layers[0], nn.Linear) and isinstance(layers[1], nn.BatchNorm1d)):
        raise ValueError(
            f"head='projection' fine-tunes from the first layer of the SSL estimator's projection head, "
            f"but {type(reference).__name__} has no MLP projector (networks_['projector']); use head='linear'.")
    return layers
