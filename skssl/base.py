"""BaseSSL: the one place that knows about arrays, devices, seeds and the fit loop.

A method subclass declares its hyper-parameters in ``_params`` and supplies
only what makes the method: ``_build_heads`` (its extra networks) and
``_loss`` (views or targets from a batch, the head, the loss). Optional hooks:
``_default_augment``, ``_after_step`` (momentum updates) and
``_before_epoch`` (DeepCluster's re-clustering).

Everything a method learns or keeps (heads, momentum encoders, memory banks,
queues as buffers) lives in ``networks_``, so that moving to a device,
pickling and checkpointing cover it without method code. During a fit,
``self._step`` and ``self._total_steps`` count optimiser steps (for momentum
schedules), ``self._batch_index`` holds the training-set indices of the
current batch (memory banks, cluster labels), ``self._n_train`` the number of
training images (set before ``_build_heads``), ``self._generator`` is the
seeded generator on the device, and whatever a method puts in
``self._epoch_metrics`` is added to the epoch's ``history_`` record.
Networks are built in ``_build_heads``/``_build_networks`` from fitted
attributes alone (never from data), so ``skssl.load`` can rebuild them.
"""

import copy
import datetime
import inspect
import math
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import _checkpoint, _distributed
from ._images import SampleLayout, resize_to, unit_range
from ._sources import TensorSource, open_source, resolve_num_workers
from ._training import LOOP_NAMES, TrainingLoop
from .augment import Augment
from .backbones import BACKBONES, build_backbone

# The parameters every method shares, with their defaults. A subclass's
# ``_params`` adds its own and may override these defaults.
COMMON_PARAMS = {
    "backbone": "auto",
    "stage": -1,
    "max_epochs": 20,
    "max_time": None,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "optimizer": "adamw",
    "device": "auto",
    "precision": "auto",
    "random_state": None,
    "verbose": False,
    "warm_start": False,
    "image_shape": None,
    "image_size": None,
    "num_workers": "auto",
    "sync_batchnorm": False,
    "checkpoint_dir": None,
    "checkpoint_every": 1,
}

COMMON_DOC = """backbone : {"auto", "small_cnn", "resnet18_cifar", "resnet18", "resnet50", "vit_tiny", "vit_small"} \
or nn.Module, default="auto"
        Network trained by the pretext task. ``"auto"`` is the small CNN for
        images under 32 pixels, the CIFAR-stem ResNet-18 (3x3 stride-1
        stem, no max-pool) from 32 to 63 pixels and torchvision's ResNet-18
        with its ImageNet stem from 64 pixels (working size, see
        ``image_size``). ``"resnet18"`` and ``"resnet50"`` have the ImageNet
        stem; ``"vit_tiny"`` and ``"vit_small"`` are Vision Transformers
        (patch size chosen from the image size; MAE and BEiT need one). A
        module maps ``(n, c, h, w)`` images to a feature map or a vector; one
        with a ``stages`` attribute exposes each stage to ``stage``.
    stage : int, default=-1
        Backbone stage whose globally pooled output ``transform`` returns
        (-1: the last; intermediate stages often transfer better).
    max_epochs : int
        Passes over the training data.
    max_time : float, datetime.timedelta or None, default=None
        Training-time budget in seconds (as PyTorch Lightning's Trainer has):
        training stops after the batch during which it runs out, keeps its
        weights, and the last ``history_`` record says ``stopped="max_time"``
        and how many ``batches`` of that epoch were done. With
        ``checkpoint_dir``, the state at the stop is saved and a later ``fit``
        continues from there with the epochs that remain (and a new budget).
    batch_size : int
        Images per optimisation step (and per ``transform`` batch).
    lr : float
        Peak learning rate, reached after a linear warm-up over the first 10%
        of the steps and followed by a cosine decay to zero.
    weight_decay : float
        Decoupled weight decay on weights (not on biases or norm layers).
    optimizer : {"adamw", "adam", "sgd"} or torch.optim.Optimizer subclass, default="adamw"
        ``"sgd"`` uses Nesterov momentum 0.9.
    device : str or torch.device, default="auto"
        ``"auto"`` trains on CUDA when available, else on the CPU.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``"auto"`` is bf16 autocast on CUDA and fp32 on the CPU.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, shuffling and augmentation. Same seed, same
        machine, CPU: identical embeddings. Global RNG states are untouched.
    verbose : bool or int, default=False
        Show a progress bar with the running loss.
    warm_start : bool, default=False
        Continue from the fitted networks for ``max_epochs`` more epochs
        instead of starting afresh.
    image_shape : tuple (h, w) or (h, w, c), default=None
        How to read rows of 2-D input. ``None`` infers it: a square feature
        count is a one-channel image, three times a square an RGB image, and
        anything else is zero-padded into the smallest square.
    image_size : int or tuple (h, w), default=None
        Size the network sees: every batch is resized to it on the device
        (bilinear, antialiased when shrinking), so large images train at a
        chosen compute budget. ``None`` keeps the input size (tiny images are
        still upsampled to what the method needs). A torch Dataset whose
        images differ in size is brought to it as it is read: shorter side
        resized, then centre-cropped, so aspect ratios are kept (arrays,
        whose images share one size, are stretched to it).
    num_workers : int or "auto", default="auto"
        DataLoader worker processes that read and decode images of a
        streamed input (torch Dataset, image folder, memmap). ``"auto"``: the
        machine's cores (up to 8) for Datasets, which decode, and 0 for
        arrays. Arrays held in memory never use a DataLoader.
    checkpoint_dir : str or path, default=None
        Folder for training checkpoints. A new ``fit`` with the same
        parameters and data resumes from the checkpoint there instead of
        starting over (warm starts save but never resume). File names are
        keyed by parameters and data, so parallel GridSearchCV workers never
        share one.
    checkpoint_every : int, default=1
        Epochs between checkpoints (the last epoch is always saved).
    sync_batchnorm : bool, default=False
        Under torchrun, normalise every BatchNorm over the batches of all
        processes (torch's SyncBatchNorm on CUDA, an equivalent on the CPU);
        no effect in one process. BYOL and SimSiam need it when the
        per-process batch is small."""

COMMON_ATTRIBUTES = """backbone_ : skssl.backbones.Backbone
        The trained backbone (also in ``networks_["backbone"]``).
    networks_ : torch.nn.ModuleDict
        Every trained network: the backbone and the method's heads.
    embedding_dim_ : int
        Width of the embedding that ``transform`` returns.
    history_ : list of dict
        One entry per epoch: ``epoch``, ``loss`` (mean over its batches),
        ``seconds`` and any metric the method records.
    loss_curve_ : list of float
        The ``loss`` of every epoch of ``history_`` (MLPClassifier's name).
    image_shape_ : tuple (h, w, c)
        Shape the input rows are read as.
    scale_ : tuple (low, high)
        Input range mapped to [0, 1] (``(0, 255)`` for uint8).
    channel_mean_, channel_std_ : ndarray of shape (c,)
        Per-channel statistics of the scaled training images; inputs are
        standardised with them before the backbone.
    augment_ : skssl.augment.Augment or tuple of Augment
        The augmentation actually used during training (multi-view methods
        may hold one per view).
    n_features_in_ : int
        Number of features (pixels times channels) per input row."""


def _default_text(value):
    return f'"{value}"' if isinstance(value, str) else repr(value)


def compose_docstring(doc, sections, params):
    """A method's docstring with its shared sections filled in and its Parameters in signature order.

    ``{name}`` placeholders are replaced by ``sections[name]`` (the shared
    parameter and attribute descriptions, written once in the base classes).
    The Parameters entries are then put in the order of ``params`` (numpydoc
    checks the order against the signature), a parameter described twice
    keeps its first (the method's own) description, and an entry without a
    ``default=`` gets the method's default from ``params``, so that shared
    descriptions of per-method defaults (``max_epochs``, ``lr``) state them.
    """
    for name, text in sections.items():
        doc = doc.replace("{" + name + "}", text)
    lines = doc.split("\n")
    try:
        start = next(i for i in range(len(lines) - 1)
                     if lines[i].strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}) + 2
    except StopIteration:
        return doc
    indent = len(lines[start - 2]) - len(lines[start - 2].lstrip())
    end = next((i for i in range(start, len(lines) - 1)
                if lines[i].strip() and set(lines[i + 1].strip()) == {"-"}), len(lines))
    while end > start and not lines[end - 1].strip():
        end -= 1
    entries, current = {}, None
    for line in lines[start:end]:
        if line.strip() and len(line) - len(line.lstrip()) == indent:
            names = tuple(n.strip() for n in line.split(" : ")[0].split(","))
            current = None if names in entries else names
            if current is not None:
                entries[current] = [line]
        elif current is not None:
            entries[current].append(line)
    for names, entry in entries.items():
        if len(names) == 1 and names[0] in params and " : " in entry[0] and "default=" not in entry[0]:
            entry[0] += f", default={_default_text(params[names[0]])}"
    rank = {name: i for i, name in enumerate(params)}
    order = sorted(entries, key=lambda names: min(rank.get(n, len(rank)) for n in names))
    return "\n".join(lines[:start] + [line for names in order for line in entries[names]] + lines[end:])


def _make_init(params):
    """An ``__init__`` that stores ``params`` unchanged, with a real signature.

    scikit-learn reads hyper-parameters from the signature of ``__init__``;
    generating it once here keeps a dozen shared parameters out of every
    method file.
    """

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {unknown}; "
                f"valid parameters are {sorted(params)}."
            )
        for name, default in params.items():
            setattr(self, name, kwargs.get(name, default))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = inspect.Signature(
        [self_param] + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in params.items()]
    )
    return __init__


class BaseSSL(ClassNamePrefixFeaturesOutMixin, TransformerMixin, TrainingLoop, BaseEstimator):
    """Base class of every self-supervised estimator; not used directly.

    Examples
    --------
    >>> from skssl import BaseSSL, SimCLR
    >>> issubclass(SimCLR, BaseSSL)
    True
    """

    _params = COMMON_PARAMS
    # Placeholders that a subclass docstring may use, in braces; subclasses add their own.
    _doc_sections = {"common_parameters": COMMON_DOC, "common_attributes": COMMON_ATTRIBUTES}
    _parameter_constraints = {
        "backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "stage": [Integral],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_time": [Interval(Real, 0, None, closed="neither"), datetime.timedelta, None],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions({"adamw", "adam", "sgd"}), type],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "image_shape": [tuple, list, None],
        "image_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "num_workers": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "sync_batchnorm": ["boolean"],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
    }
    # Images smaller than this are upsampled before training and transform.
    _min_image_size = 8
    # Adam's and AdamW's betas (a method whose paper uses others sets its own).
    _adam_betas = (0.9, 0.999)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        clash = sorted(LOOP_NAMES & set(vars(cls)))
        if clash:
            raise TypeError(
                f"{cls.__name__} defines {clash}, which would replace part of BaseSSL's training loop; "
                "methods take part through the documented hooks. Rename the method."
            )
        params, sections, introduced = {}, {}, {}
        for klass in reversed(cls.__mro__):
            declared = vars(klass).get("_params", {})
            params.update(declared)
            sections.update(vars(klass).get("_doc_sections", {}))
            introduced.update({k: klass for k in declared if k not in introduced})
        # Signature order: the class's own parameters first, then each base's, then the common ones, which
        # is the order the docstrings read in.
        depth = {klass: i for i, klass in enumerate(cls.__mro__)}
        own = sorted((k for k in params if k not in COMMON_PARAMS), key=lambda k: depth[introduced[k]])
        ordered = {**{k: params[k] for k in own}, **{k: params[k] for k in COMMON_PARAMS}}
        cls.__init__ = _make_init(ordered)
        if cls.__doc__:
            cls.__doc__ = compose_docstring(cls.__doc__, sections, ordered)

    # ------------------------------------------------------------------ hooks
    def _build_heads(self, feature_dim):
        """Return a dict of the method's networks (heads, predictors, ...)."""
        return {}

    def _loss(self, x):
        """Training loss for a batch ``x`` of unit-range images on the device."""
        raise NotImplementedError

    def _default_augment(self, image_size, channels):
        return Augment.none()

    def _after_step(self):
        """Called after every optimiser step (momentum encoders, queues)."""

    def _before_epoch(self, images, epoch):
        """Called before every epoch with the training source (``len``, ``batches``; see ``_map_images``)."""

    # ------------------------------------------------------------- utilities
    @property
    def backbone_(self):
        check_is_fitted(self, "networks_")
        return self.networks_["backbone"]

    @property
    def loss_curve_(self):
        """Mean training loss of every epoch, as scikit-learn's MLPClassifier names it (from ``history_``)."""
        check_is_fitted(self, "history_")
        return [record["loss"] for record in self.history_]

    # True where the method's ``pretext_score`` is the pretext's classification
    # accuracy; skssl.diagnostics reports it as such.
    _pretext_score_is_accuracy = False

    def _augment(self, x, augment=None, **kwargs):
        """One random augmentation per image, drawn from the fit's seeded RNG.

        ``augment`` defaults to ``augment_``; ``kwargs`` go to its call (crop
        ``boxes``, ``center_alpha``). Augmentation runs in fp32 with autocast
        disabled: inside a bf16 region the blur's convolution and the
        grayscale einsum would quantise every view to 8 bits of mantissa.
        """
        with torch.autocast(x.device.type, enabled=False):
            return (augment or self.augment_)(x.float(), self._generator, **kwargs)

    def _standardize(self, x):
        """Unit-range images -> per-channel standardised network input."""
        mean = torch.as_tensor(self.channel_mean_, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.as_tensor(self.channel_std_, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def _encode(self, x, stage=-1):
        """Pooled backbone features of unit-range images (what ``transform`` returns)."""
        return self.backbone_(self._standardize(x), stage)

    def _gather(self, x):
        """``x`` from every torchrun process, concatenated (with gradients); ``x`` in one process.

        For losses that compare samples across the batch: each process then
        computes the loss of the global batch, and DDP's gradient average
        gives exactly the single-process gradient.
        """
        return _distributed.gather(x)

    def _device(self):
        if isinstance(self.device, str) and self.device == "auto":
            if not torch.cuda.is_available():
                return torch.device("cpu")
            device = torch.device("cuda")
        else:
            try:
                device = torch.device(self.device)
            except RuntimeError as exc:
                raise ValueError(f"device={self.device!r} is not a valid torch device: {exc}") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"device={self.device!r} but CUDA is not available on this machine; use device='auto' or 'cpu'.")
        if device.type == "cuda" and device.index is None:
            # "cuda": under torchrun the GPU of this process (LOCAL_RANK), else the current one
            return _distributed.local_device() if _distributed.launched() else torch.device("cuda", torch.cuda.current_device())
        return device

    def _autocast(self, device):
        bf16 = self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    # ------------------------------------------------------------------ input
    # One path for every input, images and clips alike: X becomes a source
    # (skssl._sources.open_source) that owns its validation, sample shape,
    # scaling, statistics sample and batches. What one sample is comes from
    # one hook, ``_sample_layout`` (an image here; video methods add a time axis).
    def _check_input(self, X, reset):
        """Validate X and return it as a source (:func:`skssl._sources.open_source`).

        On ``reset`` also fix the sample shape (``image_shape_``; clips add
        ``video_shape_``). Arrays in memory go through scikit-learn's
        ``validate_data``; memmaps, h5py datasets and torch Datasets are
        checked without reading them whole.
        """
        self._check_input_params()
        source = open_source(X, self, self._sample_layout(), reset)
        if reset:
            self._set_sample_shape(source.sample_shape)
        return source

    def _check_input_params(self):
        """Refuse parameters that cannot read any input (before the input is looked at)."""

    def _sample_layout(self):
        """What one sample is: an image, its rows read with ``image_shape``."""
        return SampleLayout(type(self).__name__, self.image_shape, image_size=self._image_size())

    def _set_sample_shape(self, shape):
        self.image_shape_ = shape[-3:]
        if self._sample_layout().time:
            self.video_shape_ = shape

    @property
    def _sample_shape(self):
        """Shape of one stored sample: ``image_shape_``, or ``video_shape_`` where samples are clips."""
        return self.video_shape_ if self._sample_layout().time else self.image_shape_

    def _image_size(self):
        """``image_size`` as ``(h, w)``; None when unset."""
        size = self.image_size
        if size is None:
            return None
        size = (size, size) if isinstance(size, Integral) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, Integral) and s >= 1 for s in size):
            raise ValueError(f"image_size must be a positive int or (h, w); got {self.image_size!r}.")
        return tuple(int(s) for s in size)

    def _prepare(self, batch, device):
        """A stored batch -> unit-range float images on ``device`` at working size.

        Clips ``(b, t, c, h, w)`` are prepared frame by frame and keep their time axis.
        """
        if batch.ndim > 4:
            x = self._prepare(batch.flatten(0, batch.ndim - 4), device)
            return x.contiguous().unflatten(0, batch.shape[:-3])
        x = unit_range(batch.to(device, non_blocking=True))
        if self.image_size is not None and tuple(x.shape[-2:]) != self._image_size():
            x = F.interpolate(x, size=self._image_size(), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self._image_size()[1])
        x = resize_to(x, self._min_image_size)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _working_size(self):
        h, w = self._image_size() if self.image_size is not None else self.image_shape_[:2]
        return (max(h, self._min_image_size), max(w, self._min_image_size))

    # ------------------------------------------------------------- training
    def _initialise(self, images):
        """Fit the input statistics and build fresh networks."""
        images = images.flatten(0, images.ndim - 4)  # the frames of clips count as images
        c = self.image_shape_[2]
        sums = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        rows = max(1, (8 << 20) // (8 * math.prod(images.shape[1:])))  # float64 chunks of about 8 MB
        for chunk in images.split(rows):
            x = unit_range(chunk).double()
            sums += x.sum(dim=(0, 2, 3))
            squares += (x * x).sum(dim=(0, 2, 3))
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = sums / count
        self.channel_mean_ = mean.numpy().astype(np.float32)
        self.channel_std_ = np.sqrt(np.maximum((squares / count - mean * mean).numpy(), 1e-12)).astype(np.float32).clip(1e-3)
        self._build_networks()

    def _build_networks(self):
        """Build ``networks_`` (fresh weights) and ``embedding_dim_`` from the fitted input shape."""
        c = self.image_shape_[2]
        size = self._working_size()
        backbone = build_backbone(self.backbone, c, size)
        dims = backbone.stage_dims(c, size)
        if not -len(dims) <= self.stage < len(dims):
            raise ValueError(f"stage={self.stage} but the backbone has {len(dims)} stages (valid: {-len(dims)} to {len(dims) - 1}).")
        self.embedding_dim_ = int(dims[self.stage])
        self.networks_ = nn.ModuleDict({"backbone": backbone, **self._build_heads(int(dims[-1]))})

    def _make_optimizer(self, params):
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if isinstance(self.optimizer, type):
            return self.optimizer(groups, lr=self.lr)
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=0.9, nesterov=True)
        cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, lr=self.lr, betas=self._adam_betas)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the backbone on the pretext task.

        With ``checkpoint_dir`` set, the training state is saved every
        ``checkpoint_every`` epochs and a later ``fit`` with the same
        parameters and data resumes from it. Ctrl-C stops at the end of the
        current batch and keeps what was learned (with a warning); a
        non-finite loss raises ``FloatingPointError`` and leaves the last
        finite weights; on running out of GPU memory at the first batch the
        batch size is halved until it fits. ``max_time`` stops training
        after the batch during which the budget runs out (saving a
        checkpoint there when ``checkpoint_dir`` is set).

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c), or a torch Dataset
            Training images, uint8 or float. Arrays in memory are copied into
            one tensor; a memmap, an h5py dataset or a torch Dataset (such as
            :class:`skssl.datasets.ImageFolder`) is read batch by batch.
        y : ignored
            Present for Pipeline compatibility; self-supervised training uses no labels.

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "networks_")
        shape_before = getattr(self, "image_shape_", None)
        source = self._check_input(X, reset=True)
        if warm and self.image_shape_ != shape_before:
            raise ValueError(f"warm_start=True but X has image shape {self.image_shape_}, the model was fitted on {shape_before}.")
        if not warm:
            self.scale_ = self._fit_scale(source)
        source.scale = self.scale_
        device = self._device()
        self._rank, self._world = _distributed.init(device)
        # Rank 0's seed for every process: with random_state=None each would draw its own, and
        # the ranks' slices of the epoch order (and shared state such as queues) would disagree.
        seed = _distributed.broadcast_object(int(check_random_state(self.random_state).randint(2**31 - 1)))
        checkpoint = None
        if self.checkpoint_dir is not None:
            self._data_key = source.data_key()
            checkpoint = _checkpoint.checkpoint_path(self, self._data_key)
        self._num_workers = resolve_num_workers(self.num_workers, source)
        cuda = [device] if device.type == "cuda" else []
        # All randomness of the fit (init, shuffles, augmentations, dropout)
        # comes from seeded global generators inside this fork; the caller's
        # RNG state is restored on exit.
        with torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)
            self._n_train = len(source)
            if not warm:
                self._initialise(source.statistics_sample())
                self.history_ = []
            self.augment_ = getattr(self, "augment", None) or self._default_augment(self._working_size(), self.image_shape_[2])
            # Each process draws its own augmentations; decisions every process
            # must share (cluster seeds, say) come from the shared generator.
            self._generator = torch.Generator(device=device).manual_seed(seed + 7919 * self._rank)
            self._shared_generator = (self._generator if self._world == 1
                                      else torch.Generator(device=device).manual_seed(seed))
            self._order_generator = torch.Generator().manual_seed(seed + 1)  # the epochs' permutations
            try:
                if self._trains:
                    self._loop_train(source, device, checkpoint, resume=not warm)
                else:
                    self.networks_.eval()
            finally:
                for name in ("_generator", "_shared_generator", "_order_generator", "_total_steps", "_step",
                             "_batch_index", "_interrupted", "_data_key", "_epoch_metrics", "_num_workers", "_rank",
                             "_world", "_batch_size", "_deadline", "_tokenizer_metrics"):
                    self.__dict__.pop(name, None)
        self._n_features_out = self.embedding_dim_
        return self

    def _fit_scale(self, source):
        """``scale_`` of the training input: the source's value range."""
        return source.value_range()

    # ------------------------------------------------------------ inference
    def _map_batches(self, source, fn, batch_size=None):
        """Apply ``fn(unit_images) -> tensor`` over a source (validated input, the training set) in eval mode; numpy out.

        Running out of memory halves the batch size (down to one image).
        """
        device = self._device()
        self.networks_.to(device).eval()
        batch_size = batch_size or self.batch_size
        workers = getattr(self, "_num_workers", None)
        workers = resolve_num_workers(self.num_workers, source) if workers is None else workers
        # Under torchrun each process embeds a contiguous shard and the shards are gathered.
        rank, world = _distributed.world()
        n = len(source)
        if n < world:
            rank, world = 0, 1
        shard = torch.arange(n).tensor_split(world)[rank]
        while True:
            try:
                outputs = []
                batches = source.batches(shard.split(batch_size), workers, device.type == "cuda")
                with torch.inference_mode(), self._autocast(device):
                    for _, chunk in batches:
                        outputs.append(fn(self._prepare(chunk, device)).float().cpu())
                out = torch.cat(outputs)
                return (_distributed.gather_uneven(out) if world > 1 else out).numpy()
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size //= 2
                warnings.warn(f"Out of {device} memory in transform; retrying with batch_size={batch_size}.", stacklevel=3)
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    def _map_images(self, images, fn, batch_size=None):
        """:meth:`_map_batches` over stored images: a source, or a tensor of images (or clips)."""
        return self._map_batches(images if hasattr(images, "batches") else TensorSource(images), fn, batch_size)

    def transform(self, X):
        """Embed images with the trained backbone.

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c), or a torch Dataset
            Images as ``fit`` takes them; their shape must match the
            training images' (``image_shape_``).

        Returns
        -------
        ndarray of shape (n, embedding_dim_), float32
            Globally pooled features of backbone stage ``stage`` (not the
            projection head), computed in eval mode. Under torchrun each
            process embeds a shard and every process returns all rows, so
            every process must call ``transform`` (not only rank 0).
        """
        check_is_fitted(self, "networks_")
        source = self._check_input(X, reset=False)
        _distributed.init(self._device())
        return self._map_batches(source, lambda x: self._encode(x, self.stage)).astype(np.float32, copy=False)

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Write the estimator to ``path`` as weights and plain data, without pickle.

        Read it back with :func:`skssl.load`, which never runs code from the
        file, so it is the format to share models in. Pickle and joblib also
        work (for your own files, Pipelines and GridSearchCV).

        Parameters
        ----------
        path : str or path-like
            File to write (by convention with the suffix ``.skssl``).
        """
        from .persistence import save

        save(self, path)

    def __getstate__(self):
        state = super().__getstate__()
        modules = {k: v for k, v in state.items() if isinstance(v, nn.Module)}
        on_gpu = any(p.device.type != "cpu" for m in modules.values() for p in m.state_dict().values())
        if on_gpu:
            # Pickles must load on machines without a GPU.
            state.update({k: m.cpu() for k, m in copy.deepcopy(modules).items()})
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.allow_nan = False
        return tags
