"""Fine-tuning a self-supervised backbone end to end on the labelled images."""

import copy
from numbers import Integral, Real

from sklearn.base import _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from torch import nn

from ..augment import Augment
from ..backbones import BACKBONES
from ..base import BaseSSL
from ._base import SEMI_DOC, SHARED_DOC, SemiSupervisedClassifier, balanced_index, one_hot, subset
from ._network import _projection_layer, probe_head


class FineTuneClassifier(SemiSupervisedClassifier):
    """A self-supervised backbone fine-tuned end to end into a classifier.

    The SSL estimator ``ssl`` is pretrained on every image of ``X``, labelled
    or not; a classification head is put on its backbone and the whole
    network is then trained with cross-entropy on the labelled images only,
    with the method's augmentation, optionally frozen leading stages and a
    lower backbone learning rate. This is the fine-tuning protocol of the SSL
    papers' semi-supervised tables (SimCLR, Chen et al. 2020, section 6;
    SimCLRv2, Chen et al. 2020, which starts the head from the first layer of
    the projection head: ``head="projection"``). With ``ssl=None`` the same
    backbone is trained from random initialisation on the labels alone, the
    supervised baseline.

    {semi}

    Parameters
    ----------
    ssl : skssl estimator, "auto" or None, default="auto"
        The self-supervised estimator whose backbone is fine-tuned.
        ``"auto"`` is :class:`skssl.SimCLR` with its defaults and this
        classifier's ``backbone``, ``image_shape``, ``image_size`` and
        infrastructure settings (``device``, ``precision``, ``verbose``,
        ``checkpoint_dir``, ...). ``None``: no pretraining.
    refit_ssl : {"auto", True, False}, default="auto"
        ``"auto"``: an already fitted ``ssl`` is used as it is (its weights
        are copied; the object passed is never modified) and an unfitted one
        is pretrained on X (a clone, seeded from ``random_state`` when its own
        ``random_state`` is None). ``True`` always pretrains a fresh clone;
        ``False`` requires a fitted ``ssl``.
    head : {"linear", "projection"}, default="linear"
        ``"linear"``: one linear layer on the embedding (``ssl.stage``).
        ``"projection"``: the first Linear-BN-ReLU layer of the SSL method's
        projection head (copied with its weights), then a linear layer, as
        SimCLRv2 found better with few labels; needs a method with an MLP
        projector (SimCLR, MoCo, BYOL, SimSiam, Barlow Twins).
    head_init : {"random", "probe"}, default="random"
        ``"random"``: the usual random initialisation of the head.
        ``"probe"``: its last linear layer starts as a (standardised)
        logistic regression on the pretrained features of the labelled
        images, as in LP-FT (Kumar et al. 2022), so that the first
        gradients do not come from an arbitrary head. Measured at 300
        fine-tuning steps it made no difference on Fashion-MNIST's 100
        labels (0.684 against 0.686) and cost 0.05 on the digits' (0.883
        against 0.930), where the pretrained features were weaker than
        what fine-tuning learns; at 30 steps it helped on Fashion-MNIST
        (0.54 against 0.46). Without pretraining (``ssl=None``) the head
        starts at random either way.
    augment : skssl.augment.Augment, "auto" or None, default="auto"
        Augmentation of the labelled images. ``"auto"``: the SSL method's own
        (its first view's for asymmetric recipes); with ``ssl=None``, a
        random resized crop of scale 0.5-1 with horizontal flips. ``None``:
        no augmentation.
    freeze_stages : int, default=0
        Number of leading backbone stages kept frozen (weights and
        BatchNorm statistics).
    backbone_lr_scale : float, default=1.0
        Learning rate of the backbone relative to ``lr`` (the head's).
    class_balance : bool, default=False
        Class-balanced sampling: every epoch repeats the images of rarer
        classes so that each class is seen about as often as the largest.
    dropout : float, default=0.0
        Dropout before the last linear layer.
    backbone : str or nn.Module, default="auto"
        Backbone trained when ``ssl=None`` and of the ``"auto"`` SimCLR;
        otherwise the SSL estimator's backbone is used.
    image_shape, image_size : default=None
        As for the SSL estimators; used when ``ssl`` is None or "auto"
        (otherwise the SSL estimator's are used).
    max_epochs : int or "auto", default="auto"
        Fine-tuning epochs over the labelled images. ``"auto"``: 30, or more
        when an epoch has fewer than 10 steps, so that fine-tuning takes at
        least 300 optimisation steps (with 100 labels at batch 64 an epoch
        is a single step). The SSL estimator keeps its own ``max_epochs``.
    {shared}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen (``-1`` excluded).
    n_epochs_ : int
        Fine-tuning epochs ``max_epochs`` gave (see ``"auto"``).
    network_ : skssl.semi._network.ClassifierNetwork
        The fine-tuned network, a BaseSSL estimator: ``network_.transform``
        gives the fine-tuned embedding, ``network_.backbone_`` the backbone.
    history_ : list of dict
        One entry per fine-tuning epoch (``loss``, ``seconds``).
    n_features_in_ : int
        Features per input row.

    Examples
    --------
    >>> from skssl import FineTuneClassifier, RotationSSL
    >>> from skssl.datasets import load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> y_few = np.where(np.arange(len(y)) % 10 == 0, y, -1)   # 10% of the labels
    >>> clf = FineTuneClassifier(ssl=RotationSSL(max_epochs=1), max_epochs=1, random_state=0)
    >>> clf.fit(X[:300], y_few[:300]).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "ssl": [HasMethods(["fit", "transform"]), StrOptions({"auto"}), None],
        "refit_ssl": [StrOptions({"auto"}), "boolean"],
        "head": [StrOptions({"linear", "projection"})],
        "head_init": [StrOptions({"probe", "random"})],
        "augment": [Augment, StrOptions({"auto"}), None],
        "freeze_stages": [Interval(Integral, 0, None, closed="left")],
        "backbone_lr_scale": [Interval(Real, 0, None, closed="left")],
        "class_balance": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "backbone": [StrOptions({"auto", *BACKBONES}), nn.Module],
        "image_shape": [tuple, list, None],
        "image_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        **{k: BaseSSL._parameter_constraints[k] for k in (
            "max_time", "batch_size", "lr", "weight_decay", "optimizer", "device", "precision", "random_state",
            "verbose", "num_workers", "sync_batchnorm", "checkpoint_dir", "checkpoint_every")},
    }

    def __init__(self, ssl="auto", *, refit_ssl="auto", head="linear", head_init="random", augment="auto", freeze_stages=0,
                 backbone_lr_scale=1.0, class_balance=False, dropout=0.0, backbone="auto", image_shape=None,
                 image_size=None, max_epochs="auto", max_time=None, batch_size=64, lr=1e-3, weight_decay=1e-4, optimizer="adamw",
                 device="auto", precision="auto", random_state=None, verbose=False, num_workers="auto",
                 sync_batchnorm=False, checkpoint_dir=None, checkpoint_every=1):
        self.ssl = ssl
        self.refit_ssl = refit_ssl
        self.head = head
        self.head_init = head_init
        self.augment = augment
        self.freeze_stages = freeze_stages
        self.backbone_lr_scale = backbone_lr_scale
        self.class_balance = class_balance
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Pretrain the SSL estimator on all of X (unless fitted), then fine-tune on the labelled images.

        Parameters
        ----------
        X : array-like of images, memmap, h5py dataset or torch Dataset
            Every input the SSL estimators take.
        y : array-like of shape (n,)
            Labels, ``-1`` for unlabelled images (used for pretraining only).

        Returns
        -------
        self
        """
        X, codes, labelled = self._check_inputs(X, y)
        ssl_seed, balance_seed, seed = self._seeds(3)
        ssl = self._pretrained_ssl(X, ssl_seed)
        index = balanced_index(labelled, codes[labelled], balance_seed) if self.class_balance else labelled
        self.n_epochs_ = self._epochs(len(index))
        head_init = self._probe_head(ssl, X, labelled, codes[labelled]) if ssl is not None and self.head_init == "probe" else None
        self.network_ = self._fit_network(
            X, index, one_hot(codes[index], len(self.classes_)), codes[index], reference=ssl, seed=seed,
            head_init=head_init, max_epochs=self.n_epochs_, **self._network_params(ssl))
        self._after_fit(self.network_)
        return self

    def _pretrained_ssl(self, X, seed):
        """The fitted SSL estimator whose backbone is fine-tuned (None for ``ssl=None``)."""
        if self.ssl is None:
            return None
        if isinstance(self.ssl, str):  # "auto"
            from ..contrastive import SimCLR

            ssl = SimCLR(backbone=self.backbone, image_shape=self.image_shape, image_size=self.image_size,
                         max_time=self.max_time, random_state=seed, device=self.device, precision=self.precision, verbose=self.verbose,
                         num_workers=self.num_workers, sync_batchnorm=self.sync_batchnorm,
                         checkpoint_dir=self.checkpoint_dir, checkpoint_every=self.checkpoint_every)
            return ssl.fit(X)
        if not isinstance(self.ssl, BaseSSL):
            raise ValueError(f"ssl must be a skssl estimator (BaseSSL), 'auto' or None; got {type(self.ssl).__name__}.")
        fitted = hasattr(self.ssl, "networks_")
        if self.refit_ssl is False and not fitted:
            raise ValueError("refit_ssl=False but ssl is not fitted; fit it first or use refit_ssl='auto'.")
        if fitted and self.refit_ssl != True:  # noqa: E712 (True, not truthy "auto")
            return self.ssl  # only read: its backbone's weights are copied into the network
        ssl = clone(self.ssl)
        if ssl.random_state is None:
            ssl.set_params(random_state=seed)
        return ssl.fit(X)

    # Fine-tuning needs optimisation steps, not passes: with 100 labels at batch 64 an epoch is one
    # step. Measured on Fashion-MNIST's 100 labels (SimCLR, 3,000 images) 30, 100 and 150 one-step
    # epochs: 0.46 (random head), 0.67, 0.69, against a linear probe's 0.66; on the digits' 100
    # labels (RotationSSL, 4 steps an epoch) 30 and 75 epochs: 0.90 and 0.93 (probe 0.83).
    _auto_epochs, _min_steps = 30, 300

    def _epochs(self, n_train):
        if self.max_epochs != "auto":
            return self.max_epochs
        steps_per_epoch = n_train // min(self.batch_size, n_train)
        return max(self._auto_epochs, -(-self._min_steps // steps_per_epoch))

    def _probe_head(self, ssl, X, labelled, codes):
        """The head's last layer fitted as a linear probe on the features it will read (see ``head_init``)."""
        import torch

        if self.head == "linear":
            features = ssl.transform(subset(X, labelled))
        else:  # the projector's first Linear-BN-ReLU, in eval mode, on the last stage's features
            rows = self._network_input(ssl, subset(X, labelled), type(self).__name__)
            layer = copy.deepcopy(torch.nn.Sequential(*_projection_layer(ssl))).cpu().eval()
            with torch.inference_mode():
                last = torch.from_numpy(ssl._map_batches(rows, lambda x: ssl._encode(x, -1)))
                features = layer(last.float()).numpy()
        return probe_head(features, codes, len(self.classes_))

    def _network_params(self, ssl):
        if ssl is None:
            spatial = dict(backbone=self.backbone, image_shape=self.image_shape, image_size=self.image_size, stage=-1)
            augment = Augment(crop_scale=(0.5, 1.0), flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)
        else:
            spatial = dict(backbone=ssl.backbone, image_shape=ssl.image_shape, image_size=ssl.image_size,
                           stage=ssl.stage)
            augment = ssl.augment_[0] if isinstance(ssl.augment_, tuple) else ssl.augment_
        if not isinstance(self.augment, str):
            augment = self.augment
        if ssl is None and self.head == "projection":
            raise ValueError("head='projection' starts from an SSL method's projection head; with ssl=None use head='linear'.")
        return dict(n_classes=len(self.classes_), head=self.head, dropout=self.dropout, augment=augment,
                    alpha=1.0, backbone_lr_scale=self.backbone_lr_scale, freeze_stages=self.freeze_stages, **spatial)

    @property
    def history_(self):
        """One dict per fine-tuning epoch (``epoch``, ``loss``, ``seconds``)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "network_")
        return self.network_.history_


# max_epochs has its own entry above ("auto"); the other shared parameters are described once, in _base.
FineTuneClassifier.__doc__ = FineTuneClassifier.__doc__.replace("{semi}", SEMI_DOC).replace(
    "{shared}", "max_time" + SHARED_DOC.split("\n    max_time", 1)[1])
