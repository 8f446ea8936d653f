"""Distillation of a teacher classifier into a (smaller) student on labelled and unlabelled images."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from torch import nn

from ..augment import Augment
from ..backbones import BACKBONES
from ..base import BaseSSL
from ._base import SEMI_DOC, SHARED, SHARED_DOC, TeacherStudentClassifier, softmax


class DistilledClassifier(TeacherStudentClassifier):
    """A student network trained on a teacher classifier's softened outputs over every image.

    SimCLRv2's third step (Chen, Kornblith, Swersky, Norouzi & Hinton,
    "Big self-supervised models are strong semi-supervised learners",
    NeurIPS 2020): the fine-tuned teacher labels every training image,
    labelled or not, with ``softmax(logits / temperature)``, and the student
    minimises the cross-entropy to those distributions at the same
    temperature; ``alpha`` mixes in the ordinary cross-entropy on the labelled
    images (the paper's weighted variant). The student may be smaller than the
    teacher (``student_backbone="small_cnn"`` from a ResNet) or the same
    (self-distillation); it starts from random weights.

    {semi}

    Parameters
    ----------
    teacher : skssl.semi classifier or None, default=None
        The teacher, typically a :class:`FineTuneClassifier`. A fitted one is
        used as it is (never modified); an unfitted one is fitted on (X, y)
        first (a clone, seeded from ``random_state`` when its own is None).
        ``None``: a :class:`FineTuneClassifier` of ``backbone`` with the
        default SimCLR pretraining.
    student_backbone : str or nn.Module, default="small_cnn"
        The student's backbone; ``"auto"`` is the teacher's.
    temperature : float, default=1.0
        Softmax temperature of the teacher's and the student's outputs in
        the distillation loss (SimCLRv2 found 1 best with unlabelled data).
    alpha : float, default=0.0
        Weight of the labelled cross-entropy; the distillation loss gets
        ``1 - alpha``. Unlabelled images only ever enter the distillation term.
    augment : skssl.augment.Augment, "auto" or None, default="auto"
        Augmentation of the student's inputs. ``"auto"``: the teacher network's.
    dropout : float, default=0.0
        Dropout before the student's linear head.
    backbone : str or nn.Module, default="auto"
        Backbone of the default teacher (``teacher=None``).
    image_shape, image_size : default=None
        Input shape and working size of the default teacher.
    {shared}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    teacher_ : skssl.semi classifier
        The fitted teacher (``teacher`` itself when it was fitted).
    network_ : skssl.semi._network.ClassifierNetwork
        The trained student.
    history_ : list of dict
        One entry per epoch of the student.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skssl import DistilledClassifier, FineTuneClassifier, RotationSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> y_few = np.where(np.arange(len(y)) % 10 == 0, y, -1)
    >>> teacher = FineTuneClassifier(ssl=RotationSSL(max_epochs=1), max_epochs=1, random_state=0)
    >>> student = DistilledClassifier(teacher=teacher, max_epochs=1, random_state=0)
    >>> student.fit(X[:300], y_few[:300]).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "teacher": [HasMethods(["fit", "predict_proba"]), None],
        "student_backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "augment": [Augment, StrOptions({"auto"}), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "image_shape": [tuple, list, None],
        "image_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        **{k: BaseSSL._parameter_constraints[k] for k in (*SHARED, "random_state")},
    }

    def __init__(self, teacher=None, *, student_backbone="small_cnn", temperature=1.0, alpha=0.0, augment="auto",
                 dropout=0.0, backbone="auto", image_shape=None, image_size=None, max_epochs=30, max_time=None, batch_size=64,
                 lr=1e-3, weight_decay=1e-4, optimizer="adamw", device="auto", precision="auto",
                 random_state=None, verbose=False, num_workers="auto", sync_batchnorm=False, checkpoint_dir=None,
                 checkpoint_every=1):
        self.teacher = teacher
        self.student_backbone = student_backbone
        self.temperature = temperature
        self.alpha = alpha
        self.augment = augment
        self.dropout = dropout
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

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit (or take) the teacher, then train the student on its softened outputs over all of X.

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
        teacher_seed, seed = self._seeds(2)
        self.teacher_ = self._fitted_teacher(X, y, teacher_seed)
        self._check_teacher_classes(self.teacher_)
        soft = softmax(self._network_logits(self.teacher_.network_, X), self.temperature)
        augment = self.teacher_.network_.augment_ if isinstance(self.augment, str) else self.augment
        index = np.arange(len(codes))
        self.network_ = self._fit_network(
            X, index, soft, codes, seed=seed, temperature=self.temperature, alpha=self.alpha, augment=augment,
            dropout=self.dropout, **self._student_params(self.teacher_))
        self._after_fit(self.network_)
        return self

    @property
    def history_(self):
        """One dict per epoch of the student (``epoch``, ``loss``, ``seconds``)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "network_")
        return self.network_.history_


DistilledClassifier.__doc__ = DistilledClassifier.__doc__.replace("{semi}", SEMI_DOC).replace("{shared}", SHARED_DOC)
