"""Noisy Student: self-training with a noised student on labelled and pseudo-labelled images."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from torch import nn

from ..augment import Augment
from ..backbones import BACKBONES
from ..base import BaseSSL
from ._base import SEMI_DOC, SHARED, SHARED_DOC, TeacherStudentClassifier, one_hot, softmax, subset


def balanced_selection(probabilities, rows, threshold, rng):
    """Pseudo-labelled rows kept per class, as Noisy Student selects them.

    Rows whose top probability is below ``threshold`` are dropped; then every
    class gets the same number K of rows (K: the mean count per class that
    has any): the K most confident of a larger class, a smaller class's rows
    repeated at random up to K. Returns positions into ``rows``.
    """
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    keep = np.flatnonzero(confidence >= threshold)
    classes = [c for c in range(probabilities.shape[1]) if np.any(predicted[keep] == c)]
    if not classes:
        return keep
    k = int(round(len(keep) / len(classes)))
    chosen = []
    for c in classes:
        members = keep[predicted[keep] == c]
        members = members[np.argsort(-confidence[members], kind="stable")]
        if len(members) >= k:
            chosen.append(members[:k])
        else:
            chosen.append(np.concatenate([members, rng.choice(members, k - len(members), replace=True)]))
    return np.sort(np.concatenate(chosen))


class NoisyStudentClassifier(TeacherStudentClassifier):
    """Self-training with a noised student (Noisy Student), iterated.

    Follows Xie, Luong, Hovy & Le, "Self-training with Noisy Student
    improves ImageNet classification" (CVPR 2020): the teacher, run without
    noise, pseudo-labels the unlabelled images (soft or hard labels, a
    confidence threshold and class-balanced selection); a student of equal
    or larger size trains from random weights, with noise (strong batched
    augmentation in the spirit of RandAugment, dropout before the head and
    stochastic depth in residual blocks), on the labelled images with their
    labels plus the pseudo-labelled ones; the student then becomes the teacher
    and the process repeats ``n_iterations`` times. The first teacher may be
    trained on the labels alone (``teacher=None``, the paper's setting) or
    be a :class:`FineTuneClassifier` (SSL pretraining, then Noisy Student).

    {semi}

    Parameters
    ----------
    teacher : skssl.semi classifier or None, default=None
        The first teacher. A fitted one is used as it is (never modified); an
        unfitted one is fitted on (X, y) (a clone, seeded from
        ``random_state`` when its own is None). ``None``: a
        :class:`FineTuneClassifier` with ``ssl=None`` on ``backbone``, the
        labels alone.
    n_iterations : int, default=1
        Rounds of pseudo-labelling and student training.
    pseudo_labels : {"soft", "hard"}, default="soft"
        The teacher's class distribution, or its one-hot argmax (the paper
        found soft labels slightly better on out-of-domain unlabelled data).
    threshold : float, default=0.0
        Unlabelled images whose top teacher probability is below it are not
        used (the paper: 0.3).
    class_balance : bool, default=True
        Class-balanced selection: each class keeps the same number of
        pseudo-labelled images (the most confident ones; a rarer class's are
        repeated).
    student_backbone : str or nn.Module, default="auto"
        The students' backbone; ``"auto"`` is the first teacher's.
    augment : skssl.augment.Augment, "auto" or None, default="auto"
        The input noise. ``"auto"``: random resized crop of scale 0.25-1,
        rotation up to 15 degrees, shifts up to 10%, flips, brightness and
        contrast jitter 0.4 and Gaussian noise: a batched stand-in for
        RandAugment (geometric and photometric operations at a fixed
        magnitude). ``None``: no input noise.
    dropout : float, default=0.5
        Dropout before the student's linear head (paper: 0.5).
    drop_path : float, default=0.2
        Stochastic depth: the last residual block is skipped with this
        probability, earlier ones linearly less (paper: survival 0.8 for the
        last). No effect on backbones without residual blocks (``small_cnn``).
    backbone : str or nn.Module, default="auto"
        Backbone of the default first teacher (``teacher=None``).
    image_shape, image_size : default=None
        Input shape and working size of the default first teacher.
    {shared}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    teacher_ : skssl.semi classifier
        The fitted first teacher (``teacher`` itself when it was fitted).
    network_ : skssl.semi._network.ClassifierNetwork
        The last student, which predicts.
    history_ : list of dict
        One entry per iteration: ``iteration``, ``teacher_labelled_accuracy``
        and ``student_labelled_accuracy`` (on the labelled training images),
        ``n_pseudo_labelled`` (unlabelled images above the threshold),
        ``n_selected`` (after class balancing, with repeats),
        ``mean_confidence`` (of the teacher on the unlabelled images),
        ``pseudo_label_counts`` (selected images per class) and ``epochs``
        (the student's per-epoch records).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skssl import NoisyStudentClassifier
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> y_few = np.where(np.arange(len(y)) % 10 == 0, y, -1)
    >>> clf = NoisyStudentClassifier(max_epochs=1, random_state=0)
    >>> clf.fit(X[:300], y_few[:300]).predict(X[:3]).shape
    (3,)
    """

    _default_teacher_ssl = None
    _parameter_constraints = {
        "teacher": [HasMethods(["fit", "predict_proba"]), None],
        "n_iterations": [Interval(Integral, 1, None, closed="left")],
        "pseudo_labels": [StrOptions({"soft", "hard"})],
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "class_balance": ["boolean"],
        "student_backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "augment": [Augment, StrOptions({"auto"}), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "drop_path": [Interval(Real, 0, 1, closed="left")],
        "backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "image_shape": [tuple, list, None],
        "image_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        **{k: BaseSSL._parameter_constraints[k] for k in (*SHARED, "random_state")},
    }

    def __init__(self, teacher=None, *, n_iterations=1, pseudo_labels="soft", threshold=0.0, class_balance=True,
                 student_backbone="auto", augment="auto", dropout=0.5, drop_path=0.2, backbone="auto",
                 image_shape=None, image_size=None, max_epochs=30, max_time=None, batch_size=64, lr=1e-3, weight_decay=1e-4,
                 optimizer="adamw", device="auto", precision="auto", random_state=None, verbose=False,
                 num_workers="auto", sync_batchnorm=False, checkpoint_dir=None, checkpoint_every=1):
        self.teacher = teacher
        self.n_iterations = n_iterations
        self.pseudo_labels = pseudo_labels
        self.threshold = threshold
        self.class_balance = class_balance
        self.student_backbone = student_backbone
        self.augment = augment
        self.dropout = dropout
        self.drop_path = drop_path
        self.backbone = backbone
        self.image_shape = image_shape
        self.image_size = image_size
        self.max_epochs = max_epochs
        self.max_time = max_time
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose
        self.num_workers = num_workers
        self.sync_batchnorm = sync_batchnorm
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def _noise(self):
        if isinstance(self.augment, str):
            return Augment(crop_scale=(0.25, 1.0), flip_p=0.5, degrees=15.0, translate=0.1, brightness=0.4,
                           contrast=0.4, saturation=0.0, jitter_p=0.8, grayscale_p=0.0, noise_std=0.05, noise_p=0.5)
        return self.augment

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit (or take) the first teacher, then train ``n_iterations`` noised students.

        Parameters
        ----------
        X : array-like of images, memmap, h5py dataset or torch Dataset
            Training images, labelled and unlabelled.
        y : array-like of shape (n,)
            Labels, ``-1`` for unlabelled images.

        Returns
        -------
        self
        """
        X, codes, labelled = self._check_inputs(X, y)
        unlabelled = np.flatnonzero(codes < 0)
        seeds = self._seeds(2 + 2 * self.n_iterations)
        self.teacher_ = self._fitted_teacher(X, y, seeds[0])
        self._check_teacher_classes(self.teacher_)
        params = self._student_params(self.teacher_)
        n_classes = len(self.classes_)
        X_labelled = X if len(labelled) == len(codes) else subset(X, labelled)
        X_unlabelled = subset(X, unlabelled) if len(unlabelled) else None
        teacher, history = self.teacher_.network_, []
        for iteration in range(self.n_iterations):
            record = {"iteration": iteration + 1,
                      "teacher_labelled_accuracy": self._accuracy(teacher, X_labelled, codes[labelled])}
            index, soft = labelled, one_hot(codes[labelled], n_classes)
            if X_unlabelled is not None:
                probabilities = softmax(self._network_logits(teacher, X_unlabelled))
                rng = np.random.RandomState(seeds[2 + 2 * iteration])
                selected = (balanced_selection(probabilities, unlabelled, self.threshold, rng) if self.class_balance
                            else np.flatnonzero(probabilities.max(axis=1) >= self.threshold))
                targets = probabilities[selected]
                if self.pseudo_labels == "hard":
                    targets = one_hot(targets.argmax(axis=1), n_classes)
                index = np.concatenate([labelled, unlabelled[selected]])
                soft = np.concatenate([soft, targets])
                record.update(n_pseudo_labelled=int(np.sum(probabilities.max(axis=1) >= self.threshold)),
                              n_selected=len(selected), mean_confidence=float(probabilities.max(axis=1).mean()),
                              pseudo_label_counts=np.bincount(targets.argmax(axis=1), minlength=n_classes).tolist())
            hard = np.full(len(index), -1)  # soft targets only: labels enter as one-hot rows
            student = self._fit_network(X, index, soft, hard, seed=seeds[3 + 2 * iteration], alpha=0.0,
                                        augment=self._noise(), dropout=self.dropout, drop_path=self.drop_path,
                                        **params)
            record["student_labelled_accuracy"] = self._accuracy(student, X_labelled, codes[labelled])
            record["epochs"] = student.history_
            history.append(record)
            teacher = student
        self.network_, self.history_ = teacher, history
        self._after_fit(self.network_)
        return self

    def _accuracy(self, network, X, codes):
        return float(np.mean(self._network_logits(network, X).argmax(axis=1) == codes))


NoisyStudentClassifier.__doc__ = NoisyStudentClassifier.__doc__.replace("{semi}", SEMI_DOC).replace("{shared}", SHARED_DOC)
