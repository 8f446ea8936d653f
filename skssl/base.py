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
import inspect
import math
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import _checkpoint
from ._images import flatten_images, fit_scale, resize_to, resolve_image_shape, to_image_tensor, unit_range
from .augment import Augment
from .backbones import BACKBONES, build_backbone

# The parameters every method shares, with their defaults. A subclass's
# ``_params`` adds its own and may override these defaults.
COMMON_PARAMS = {
    "backbone": "auto",
    "stage": -1,
    "max_epochs": 20,
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
    "checkpoint_dir": None,
    "checkpoint_every": 1,
}

COMMON_DOC = """backbone : {"auto", "small_cnn", "resnet18"} or nn.Module, default="auto"
        Network trained by the pretext task. ``"auto"`` is the small CNN for
        images under 32 pixels and the CIFAR-style ResNet-18 otherwise. A
        module maps ``(n, c, h, w)`` images to a feature map or a vector; one
        with a ``stages`` attribute exposes each stage to ``stage``.
    stage : int, default=-1
        Backbone stage whose globally pooled output ``transform`` returns
        (-1: the last; intermediate stages often transfer better).
    max_epochs : int
        Passes over the training data.
    batch_size : int, default=256
        Images per optimisation step (and per ``transform`` batch).
    lr : float
        Peak learning rate, reached after a linear warm-up over the first 10%
        of the steps and followed by a cosine decay to zero.
    weight_decay : float, default=1e-4
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
    checkpoint_dir : str or path, default=None
        Folder for training checkpoints. A new ``fit`` with the same
        parameters and data resumes from the checkpoint there instead of
        starting over (warm starts save but never resume). File names are
        keyed by parameters and data, so parallel GridSearchCV workers never
        share one.
    checkpoint_every : int, default=1
        Epochs between checkpoints (the last epoch is always saved)."""

COMMON_ATTRIBUTES = """backbone_ : skssl.backbones.Backbone
        The trained backbone (also in ``networks_["backbone"]``).
    networks_ : torch.nn.ModuleDict
        Every trained network: the backbone and the method's heads.
    embedding_dim_ : int
        Width of the embedding that ``transform`` returns.
    history_ : list of dict
        One entry per epoch: ``epoch``, ``loss`` (mean over its batches),
        ``seconds`` and any metric the method records.
    image_shape_ : tuple (h, w, c)
        Shape the input rows are read as.
    scale_ : tuple (low, high)
        Input range mapped to [0, 1] (``(0, 255)`` for uint8).
    channel_mean_, channel_std_ : ndarray of shape (c,)
        Per-channel statistics of the scaled training images; inputs are
        standardised with them before the backbone.
    augment_ : skssl.augment.Augment
        The augmentation actually used during training.
    n_features_in_ : int
        Number of features (pixels times channels) per input row."""


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


@contextmanager
def _sigint_sets_flag(estimator):
    """Turn Ctrl-C into a flag the loop checks after each batch.

    A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread
    (where signal handlers cannot be installed) Ctrl-C arrives as a
    KeyboardInterrupt, which the loop also treats as a stop request.
    """
    estimator._interrupted = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if estimator._interrupted:
            raise KeyboardInterrupt
        estimator._interrupted = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _warmup_cosine(total_steps):
    warmup = max(1, total_steps // 10)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class BaseSSL(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base class of every self-supervised estimator; not used directly."""

    _params = COMMON_PARAMS
    _parameter_constraints = {
        "backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "stage": [Integral],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
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
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
    }
    # Images smaller than this are upsampled before training and transform.
    _min_image_size = 8

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        params = {}
        for klass in reversed(cls.__mro__):
            params.update(vars(klass).get("_params", {}))
        own = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
        cls.__init__ = _make_init({**own, **{k: params[k] for k in COMMON_PARAMS}})
        if cls.__doc__:
            cls.__doc__ = cls.__doc__.replace("{common_parameters}", COMMON_DOC).replace(
                "{common_attributes}", COMMON_ATTRIBUTES
            )

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
        """Called before every epoch with the stored training images."""

    # ------------------------------------------------------------- utilities
    @property
    def backbone_(self):
        check_is_fitted(self, "networks_")
        return self.networks_["backbone"]

    def _augment(self, x):
        """One random augmentation per image, drawn from the fit's seeded RNG."""
        return self.augment_(x, self._generator)

    def _standardize(self, x):
        """Unit-range images -> per-channel standardised network input."""
        mean = torch.as_tensor(self.channel_mean_, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.as_tensor(self.channel_std_, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def _encode(self, x, stage=-1):
        """Pooled backbone features of unit-range images (what ``transform`` returns)."""
        return self.backbone_(self._standardize(x), stage)

    def _device(self):
        if isinstance(self.device, str) and self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"device={self.device!r} is not a valid torch device: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available on this machine; use device='auto' or 'cpu'.")
        return device

    def _autocast(self, device):
        bf16 = self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def _check_input(self, X, reset):
        """Validate X and return flat rows; on ``reset`` also fix ``image_shape_``."""
        name = type(self).__name__
        X, shape = flatten_images(X, self.image_shape, name)
        if not reset and shape is not None and shape != self.image_shape_:
            raise ValueError(f"X holds images of shape {shape} (h, w, c) but {name} was fitted on {self.image_shape_}.")
        X = validate_data(self, X, reset=reset, dtype="numeric", ensure_min_samples=2 if reset else 1)
        if reset:
            self.image_shape_ = shape or resolve_image_shape(self.image_shape, X.shape[1], name)
        return X

    def _images(self, X):
        return to_image_tensor(X, self.image_shape_, self.scale_)

    def _prepare(self, batch, device):
        """A stored batch -> unit-range float images on ``device`` at working size."""
        x = resize_to(unit_range(batch.to(device, non_blocking=True)), self._min_image_size)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _working_size(self):
        h, w, _ = self.image_shape_
        return (max(h, self._min_image_size), max(w, self._min_image_size))

    # ------------------------------------------------------------- training
    def _initialise(self, images):
        """Fit the input statistics and build fresh networks."""
        c = self.image_shape_[2]
        sums = torch.zeros(c, dtype=torch.float64)
        squares = torch.zeros(c, dtype=torch.float64)
        for chunk in images.split(4096):
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
        return cls(groups, lr=self.lr)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the backbone on the pretext task.

        With ``checkpoint_dir`` set, the training state is saved every
        ``checkpoint_every`` epochs and a later ``fit`` with the same
        parameters and data resumes from it. Ctrl-C stops at the end of the
        current batch and keeps what was learned (with a warning); a
        non-finite loss raises ``FloatingPointError`` and leaves the last
        finite weights; on running out of GPU memory at the first batch the
        batch size is halved until it fits.

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c)
            Training images, uint8 or float.
        y : ignored
            Present for Pipeline compatibility; self-supervised training uses no labels.

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "networks_")
        shape_before = getattr(self, "image_shape_", None)
        X = self._check_input(X, reset=True)
        if warm and self.image_shape_ != shape_before:
            raise ValueError(f"warm_start=True but X has image shape {self.image_shape_}, the model was fitted on {shape_before}.")
        if not warm:
            self.scale_ = fit_scale(X)
        images = self._images(X)
        device = self._device()
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        checkpoint = None
        if self.checkpoint_dir is not None:
            self._data_key = _checkpoint.data_key(X)
            checkpoint = _checkpoint.checkpoint_path(self, self._data_key)
        cuda = [device] if device.type == "cuda" else []
        # All randomness of the fit (init, shuffles, augmentations, dropout)
        # comes from seeded global generators inside this fork; the caller's
        # RNG state is restored on exit.
        with torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)
            self._n_train = images.shape[0]
            if not warm:
                self._initialise(images)
                self.history_ = []
            self.augment_ = getattr(self, "augment", None) or self._default_augment(self._working_size(), self.image_shape_[2])
            self._generator = torch.Generator(device=device).manual_seed(seed)
            try:
                self._train(images, device, checkpoint, resume=not warm)
            finally:
                for name in ("_generator", "_total_steps", "_step", "_batch_index", "_interrupted", "_data_key", "_epoch_metrics"):
                    self.__dict__.pop(name, None)
        self._n_features_out = self.embedding_dim_
        return self

    def _train(self, images, device, checkpoint, resume):
        nets = self.networks_.to(device)
        if device.type == "cuda":
            nets.to(memory_format=torch.channels_last)
            if images.element_size() * images.nelement() < 0.25 * torch.cuda.mem_get_info(device)[0]:
                images = images.to(device)
        batch_size = min(self.batch_size, images.shape[0])
        state = _checkpoint.load(checkpoint, self, self._data_key) if resume and checkpoint and os.path.exists(checkpoint) else None
        try:
            with _sigint_sets_flag(self):
                while True:
                    try:
                        return self._run_epochs(images, device, batch_size, checkpoint, state)
                    except torch.OutOfMemoryError as exc:
                        # Only the very first batch is retried: nothing has been learned yet.
                        if self._step > 0 or batch_size <= 2:
                            raise MemoryError(
                                f"{type(self).__name__} ran out of {device} memory at batch_size={batch_size}. "
                                "Use a smaller backbone, smaller images or precision='bf16'."
                            ) from exc
                        batch_size //= 2
                        warnings.warn(f"Out of {device} memory at the first batch; retrying with batch_size={batch_size}.", stacklevel=4)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
        finally:
            nets.eval()

    def _run_epochs(self, images, device, batch_size, checkpoint, state):
        from tqdm.auto import tqdm

        nets, n = self.networks_, images.shape[0]
        steps = n // batch_size
        optimizer = self._make_optimizer([p for p in nets.parameters() if p.requires_grad])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps * self.max_epochs))
        self._total_steps, self._step = steps * self.max_epochs, 0
        first_epoch = len(self.history_)
        if state is not None:
            self._restore(state, optimizer, schedule)
        last_good = None
        epochs = tqdm(range(len(self.history_) - first_epoch, self.max_epochs), desc=type(self).__name__, disable=not self.verbose, leave=False)
        for epoch in epochs:
            start = time.perf_counter()
            self._epoch_metrics = {}
            if all(torch.isfinite(t).all() for t in nets.state_dict().values() if t.is_floating_point()):
                last_good = {k: t.detach().clone() for k, t in nets.state_dict().items()}
            self._before_epoch(images, len(self.history_))
            nets.train()
            order = torch.randperm(n).to(images.device)
            total, done = torch.zeros((), device=device), 0
            for i in range(steps):
                try:
                    index = order[i * batch_size:(i + 1) * batch_size]
                    self._batch_index = index.to(device)
                    x = self._prepare(images[index], device)
                    with self._autocast(device):
                        loss = self._loss(x)
                    if not torch.isfinite(loss):
                        if last_good is not None:
                            nets.load_state_dict(last_good)
                        raise FloatingPointError(
                            f"{type(self).__name__}: the loss became {loss.item()} at epoch {len(self.history_) + 1}, "
                            f"batch {i + 1} (lr={self.lr}). Try a lower learning rate; the model keeps its last finite weights."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    self._step += 1
                    self._after_step()
                    total += loss.detach().float()
                    done += 1
                except KeyboardInterrupt:
                    self._interrupted = True
                if self._interrupted:
                    break
            record = {"epoch": len(self.history_) + 1, "loss": total.item() / max(done, 1), "seconds": time.perf_counter() - start}
            record.update(self._epoch_metrics)
            if self._interrupted:
                record.update(interrupted=True, batches=done)
            self.history_.append(record)
            epochs.set_postfix(loss=f"{record['loss']:.4f}")
            if self._interrupted:
                warnings.warn(
                    f"{type(self).__name__}.fit interrupted in epoch {record['epoch']} after {done} of {steps} batches; "
                    "the model keeps what it has learned so far.",
                    stacklevel=5,
                )
                return
            if checkpoint and ((epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.max_epochs):
                self._save_checkpoint(checkpoint, optimizer, schedule)

    def _save_checkpoint(self, path, optimizer, schedule):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _checkpoint.atomic_save(path, {
            "class": type(self).__name__,
            "parameter_key": _checkpoint.parameter_key(self),
            "data_key": self._data_key,
            "networks": self.networks_.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "history": self.history_,
            "step": self._step,
            "rng_cpu": torch.get_rng_state(),
            "rng_device": self._generator.get_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self._generator.device.type == "cuda" else torch.empty(0),
        })

    def _restore(self, state, optimizer, schedule):
        self.networks_.load_state_dict(state["networks"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        self.history_ = list(state["history"])
        self._step = state["step"]
        torch.set_rng_state(state["rng_cpu"])
        self._generator.set_state(state["rng_device"])
        if self._generator.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"])

    # ------------------------------------------------------------ inference
    def _map_batches(self, X, fn, batch_size=None):
        """Apply ``fn(unit_images) -> tensor`` over validated rows X in eval mode; numpy out."""
        return self._map_images(self._images(X), fn, batch_size)

    def _map_images(self, images, fn, batch_size=None):
        """Apply ``fn(unit_images) -> tensor`` over stored images in eval mode; numpy out.

        Running out of memory halves the batch size (down to one image).
        """
        device = self._device()
        self.networks_.to(device).eval()
        batch_size = batch_size or self.batch_size
        while True:
            try:
                outputs = []
                with torch.inference_mode(), self._autocast(device):
                    for chunk in images.split(batch_size):
                        outputs.append(fn(self._prepare(chunk, device)).float().cpu())
                return torch.cat(outputs).numpy()
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size //= 2
                warnings.warn(f"Out of {device} memory in transform; retrying with batch_size={batch_size}.", stacklevel=3)
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    def transform(self, X):
        """Embed images with the trained backbone.

        Parameters
        ----------
        X : array-like of shape (n, h*w*c), (n, h, w) or (n, h, w, c)

        Returns
        -------
        ndarray of shape (n, embedding_dim_), float32
            Globally pooled features of backbone stage ``stage`` (not the
            projection head), computed in eval mode.
        """
        check_is_fitted(self, "networks_")
        X = self._check_input(X, reset=False)
        return self._map_batches(X, lambda x: self._encode(x, self.stage)).astype(np.float32, copy=False)

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Write the estimator to ``path`` as weights and plain data, without pickle.

        Read it back with :func:`skssl.load`, which never runs code from the
        file, so it is the format to share models in. Pickle and joblib also
        work (for your own files, Pipelines and GridSearchCV).
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
