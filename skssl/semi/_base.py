"""What the classifiers of :mod:`skssl.semi` share: labels with ``-1`` for unlabelled, subsets, prediction.

Each public classifier wraps one or more :class:`~skssl.semi._network.ClassifierNetwork`
estimators (private BaseSSL subclasses) and trains them through the shared
training loop; this module turns ``y`` into their per-image targets and maps
their logits back to scikit-learn's classifier API.
"""

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .._sources import is_dataset, is_streaming_input
from ._network import ClassifierNetwork

# Parameters a classifier passes on unchanged to the networks (and SSL estimators) it trains.
SHARED = ("max_epochs", "max_time", "batch_size", "lr", "weight_decay", "optimizer", "device", "precision", "verbose",
          "num_workers", "sync_batchnorm", "checkpoint_dir", "checkpoint_every")

SHARED_DOC = """max_epochs : int
        Passes over the training images of each network trained.
    max_time : float, datetime.timedelta or None, default=None
        Training-time budget in seconds of each network trained (see
        :class:`skssl.base.BaseSSL`): it stops after the batch during which
        the budget runs out and keeps its weights.
    batch_size : int
        Images per optimisation step (and per prediction batch).
    lr : float
        Peak learning rate (linear warm-up over the first 10% of the steps,
        then cosine decay to zero).
    weight_decay : float, default=1e-4
        Decoupled weight decay on weights (not on biases or norm layers).
    optimizer : {"adamw", "adam", "sgd"} or torch.optim.Optimizer subclass, default="adamw"
    device : str or torch.device, default="auto"
        ``"auto"`` trains on CUDA when available, else on the CPU.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``"auto"`` is bf16 autocast on CUDA and fp32 on the CPU.
    random_state : int, RandomState or None, default=None
        Seeds every network trained (and an SSL estimator created or
        cloned here). Same seed, same machine, CPU: identical predictions.
    verbose : bool or int, default=False
        Progress bars with the running loss.
    num_workers : int or "auto", default="auto"
        DataLoader workers for streamed input (Datasets, image folders, memmaps).
    sync_batchnorm : bool, default=False
        Under torchrun, BatchNorm over the batches of all processes.
    checkpoint_dir : str or path, default=None
        Folder for training checkpoints of every network trained (and of an
        SSL estimator pretrained here). A new ``fit`` with the same
        parameters, data and labels resumes from them.
    checkpoint_every : int, default=1
        Epochs between checkpoints."""

SEMI_DOC = """``y == -1`` marks an unlabelled image, as in :mod:`sklearn.semi_supervised`
    (with string labels, ``-1`` may be the integer or the string ``"-1"``).
    :meth:`score` counts only labelled rows, so inside ``GridSearchCV`` the
    unlabelled rows of a test fold are skipped while those of each training
    fold are trained on."""


def unlabelled_mask(y):
    """True where ``y`` marks an unlabelled image (``-1``, or ``"-1"`` among strings)."""
    y = np.asarray(y)
    if y.dtype.kind in "biuf":
        return y == -1
    return np.array([(isinstance(v, str) and v == "-1") or (not isinstance(v, str) and v == -1) for v in y.tolist()],
                    dtype=bool) if y.size else np.zeros(0, dtype=bool)


def n_samples(X):
    if is_dataset(X):
        return len(X)
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(X)


class _Subset(torch.utils.data.Dataset):
    """Some items of a Dataset, keeping what skssl reads from it (``image_shape``)."""

    def __init__(self, dataset, index):
        self.dataset, self.index = dataset, [int(i) for i in index]
        if getattr(dataset, "image_shape", None) is not None:
            self.image_shape = dataset.image_shape

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        read = getattr(self.dataset, "read_image", None)
        return read(self.index[i]) if read is not None else self.dataset[self.index[i]]


def subset(X, index):
    """Rows ``index`` (sorted, so h5py can read them) of any input the estimators take."""
    if is_dataset(X):
        return _Subset(X, index)
    if hasattr(X, "iloc") or isinstance(X, (list, tuple)):
        return _safe_indexing(X, index)
    return X[index]


class SemiSupervisedClassifier(ClassifierMixin, BaseEstimator):
    """Base of the classifiers in :mod:`skssl.semi`; not used directly."""

    # ----------------------------------------------------------------- labels
    def _check_inputs(self, X, y):
        """Validate X and y; set ``classes_``; return (X, encoded labels with -1 for unlabelled, labelled index).

        Arrays in memory are checked here (sparse and NaN refused, lists
        converted); data frames keep their column names and streamed inputs
        are left to the networks, which read them batch by batch.
        """
        if not is_streaming_input(X) and not hasattr(X, "iloc"):
            X = check_array(X, accept_sparse=False, dtype="numeric", allow_nd=True, ensure_min_samples=2,
                            input_name="X")
        return (X, *self._check_labels(X, y))

    def _check_labels(self, X, y):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None "
                             "(use -1 for unlabelled images).")
        y = column_or_1d(y, warn=True)
        n = n_samples(X)
        if len(y) != n:
            raise ValueError(f"X has {n} images but y has {len(y)} labels.")
        unlabelled = unlabelled_mask(y)
        labelled = np.flatnonzero(~unlabelled)
        if len(labelled) == 0:
            raise ValueError(f"{type(self).__name__}: every y is -1 (unlabelled); at least two labelled classes "
                             "are needed to train a classifier.")
        known = y[labelled]
        if known.dtype == object:
            kinds = {type(v) for v in known.tolist()}
            if len({str if issubclass(k, str) else k for k in kinds}) > 1:
                raise ValueError(f"y mixes label types {sorted(k.__name__ for k in kinds)}; use one type "
                                 "(and -1 for unlabelled images).")
        check_classification_targets(known)
        self.classes_, encoded = np.unique(known, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__}: the labelled images have one class only "
                             f"({self.classes_[0]!r}); a classifier needs at least two.")
        codes = np.full(n, -1, dtype=np.int64)
        codes[labelled] = encoded
        return codes, labelled

    # ---------------------------------------------------------------- networks
    def _seeds(self, count):
        rng = check_random_state(self.random_state)
        return [int(s) for s in rng.randint(2**31 - 1, size=count)]

    def _shared_params(self):
        return {k: getattr(self, k) for k in SHARED}

    def _fit_network(self, X, index, soft, hard, *, reference=None, seed=None, head_init=None, **params):
        """Train a :class:`ClassifierNetwork` on images ``X[index]`` with per-image targets.

        ``soft``: (len(index), n_classes) target distributions; ``hard``:
        (len(index),) class codes, -1 where none. ``reference``: a fitted SSL
        estimator (or network) whose backbone and input statistics start the
        fit. ``head_init``: (weight, bias) of the head's last linear layer.
        Returns the fitted network.
        """
        order = np.argsort(index, kind="stable")
        index, soft, hard = np.asarray(index)[order], np.asarray(soft, np.float32)[order], np.asarray(hard)[order]
        key_parts = [index, soft, hard]
        if reference is not None:
            key_parts.append({k: v.cpu().numpy() for k, v in reference.networks_["backbone"].state_dict().items()})
        if head_init is not None:
            key_parts.append(head_init)
        params = {**self._shared_params(), **params}
        network = ClassifierNetwork(random_state=seed, target_key=joblib.hash(key_parts), **params)
        network._reference = reference
        network._head_init = head_init
        network._soft_targets = torch.from_numpy(soft)
        network._hard_targets = torch.from_numpy(hard.astype(np.int64))
        try:
            network.fit(subset(X, index))
        except ValueError as exc:
            raise ValueError(str(exc).replace(type(network).__name__, type(self).__name__)) from None
        finally:
            for name in ("_reference", "_head_init", "_soft_targets", "_hard_targets"):
                network.__dict__.pop(name, None)
        return network

    @staticmethod
    def _network_input(network, X, name):
        try:
            return network._check_input(X, reset=False)
        except ValueError as exc:
            raise ValueError(str(exc).replace(type(network).__name__, name)) from None

    def _after_fit(self, network):
        """Input bookkeeping scikit-learn expects of a fitted classifier, from the final network."""
        self.n_features_in_ = network.n_features_in_
        if hasattr(network, "feature_names_in_"):
            self.feature_names_in_ = network.feature_names_in_
        else:
            self.__dict__.pop("feature_names_in_", None)

    # --------------------------------------------------------------- predict
    def _logits(self, X):
        check_is_fitted(self, "network_")
        return self._network_logits(self.network_, X)

    def _network_logits(self, network, X):
        return network.decision(self._network_input(network, X, type(self).__name__))

    def decision_function(self, X):
        """Compute the logits of the classifier (for two classes: the logit of ``classes_[1]`` minus that of ``classes_[0]``).

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n,) or (n, n_classes)
            The logits.
        """
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, n_classes)
            The probability of each class for each image.
        """
        logits = self._logits(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n, n_classes)
            The log-probability of each class for each image.
        """
        logits = self._logits(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X):
        """Predict the most probable class of each image.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.

        Returns
        -------
        ndarray of shape (n,)
            Class labels, from ``classes_``.
        """
        check_is_fitted(self, "network_")
        return self.classes_[self._logits(X).argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labelled rows of ``y``; rows with ``y == -1`` are skipped.

        That makes ``GridSearchCV`` work on semi-supervised data as it is: each
        training fold keeps its unlabelled images and each test fold is scored
        on its labelled ones only.

        Parameters
        ----------
        X : array-like of images or a torch Dataset
            Images as ``fit`` takes them.
        y : array-like of shape (n,)
            True labels, -1 for unlabelled rows.
        sample_weight : array-like of shape (n,), default=None
            Weights of the rows (those of unlabelled rows are ignored).

        Returns
        -------
        float
            Accuracy on the labelled rows.
        """
        from sklearn.metrics import accuracy_score

        check_is_fitted(self, "network_")
        y = column_or_1d(y, warn=True)
        keep = np.flatnonzero(~unlabelled_mask(y))
        if len(keep) == 0:
            raise ValueError("score needs at least one labelled row (y != -1).")
        weight = None if sample_weight is None else np.asarray(sample_weight)[keep]
        X_keep = X if len(keep) == len(y) else subset(X, keep)
        return accuracy_score(y[keep], self.predict(X_keep), sample_weight=weight)

    def save(self, path):
        """Write the classifier (with its networks and SSL estimator) to ``path`` without pickle.

        Read it back with :func:`skssl.load`.

        Parameters
        ----------
        path : str or path-like
            File to write.
        """
        from ..persistence import save

        save(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


def one_hot(codes, n_classes):
    out = np.zeros((len(codes), n_classes), dtype=np.float32)
    out[np.arange(len(codes)), codes] = 1
    return out


def balanced_index(index, codes, seed):
    """``index`` with minority classes repeated so every class appears about equally often."""
    counts = np.bincount(codes)
    target = counts.max()
    rng = np.random.RandomState(seed)
    parts = []
    for c in np.flatnonzero(counts):
        rows = index[codes == c]
        reps, extra = divmod(target, len(rows))
        parts.append(np.concatenate([np.tile(rows, reps), rng.choice(rows, extra, replace=False)]))
    return np.concatenate(parts)


def softmax(logits, temperature=1.0):
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


class TeacherStudentClassifier(SemiSupervisedClassifier):
    """A classifier whose students learn from a teacher classifier's outputs (distillation, Noisy Student)."""

    # ``ssl`` of the FineTuneClassifier trained as teacher when ``teacher=None``.
    _default_teacher_ssl = "auto"

    def _fitted_teacher(self, X, y, seed):
        """``teacher`` as it is when fitted; else a clone fitted on (X, y) (a labels-alone FineTuneClassifier for None)."""
        from sklearn.base import clone

        from .fine_tune import FineTuneClassifier

        teacher = self.teacher
        if teacher is not None and hasattr(teacher, "network_"):
            if not isinstance(teacher, SemiSupervisedClassifier):
                raise ValueError(f"teacher must be a skssl.semi classifier; got {type(teacher).__name__}.")
            return teacher  # only read
        if teacher is None:
            teacher = FineTuneClassifier(ssl=self._default_teacher_ssl, backbone=self.backbone, image_shape=self.image_shape,
                                         image_size=self.image_size, **self._shared_params())
        elif not isinstance(teacher, SemiSupervisedClassifier):
            raise ValueError(f"teacher must be a skssl.semi classifier (e.g. FineTuneClassifier) or None; "
                             f"got {type(teacher).__name__}.")
        else:
            teacher = clone(teacher)
        if teacher.random_state is None:
            teacher.set_params(random_state=seed)
        return teacher.fit(X, y)

    def _check_teacher_classes(self, teacher):
        if not np.array_equal(np.asarray(teacher.classes_), np.asarray(self.classes_)):
            raise ValueError(f"The fitted teacher knows the classes {list(teacher.classes_)} but y has "
                             f"{list(self.classes_)}; fit the teacher on the same labels.")

    def _student_params(self, teacher):
        net = teacher.network_
        backbone = net.backbone if self.student_backbone == "auto" else self.student_backbone
        return dict(n_classes=len(self.classes_), backbone=backbone, image_shape=net.image_shape,
                    image_size=net.image_size, stage=-1, head="linear")
