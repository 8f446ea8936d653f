"""The shared base of joint-embedding methods: augmented views of each image.

Where the crop of each view is placed is a choice every such method shares:
``crop="random"`` draws it uniformly (the random resized crop of SimCLR),
``crop="contrastive"`` is ContrastiveCrop (Peng et al., CVPR 2022): every few
epochs the backbone's own heatmaps give each training image an object box,
and crop centres are drawn inside it from a U-shaped Beta distribution so that
two views of one image overlap less but both keep the object.
"""

from dataclasses import replace
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

from ..augment import Augment
from ..base import BaseSSL
from .ccrop import CropBoxes, feature_map_boxes

VIEW_DOC = """augment : skssl.augment.Augment, tuple of Augment or None, default=None
        How each view is made. ``None`` uses the method's published recipe
        (described above), adapted to the image: saturation, hue and
        grayscale only for RGB images, blur only above 32 pixels (SimCLR's
        CIFAR recipe drops it at 32). One ``Augment`` makes every view; a
        tuple gives view ``i`` the pipeline ``augment[i % len(augment)]``
        (BYOL's asymmetric views). ``augment_`` holds what was used.
    crop : {"random", "contrastive"}, default="random"
        How the crop of each view is placed. ``"random"``: uniformly, as in
        SimCLR. ``"contrastive"``: ContrastiveCrop (Peng et al., CVPR 2022);
        after ``crop_warmup`` epochs of random crops, and then every
        ``crop_update_every`` epochs, the backbone's last feature map (summed
        over channels, min-max normalised, upsampled, thresholded at
        ``crop_threshold``) gives each training image a box, and each view's
        crop centre is drawn in it from Beta(``crop_alpha``, ``crop_alpha``)
        per axis. Crop scale and aspect follow ``augment``. The boxes are kept
        in ``networks_["crop_boxes"]``. The ``crop_*`` parameters below are
        ignored with ``crop="random"``.
    crop_alpha : float, default=0.6
        Beta shape of the crop centres inside the box: below 1 favours the
        box's edges (the paper's centre suppression; it uses 0.6 on ImageNet
        and 0.1 on CIFAR), 1 is uniform.
    crop_threshold : float, default=0.1
        Level of the normalised heatmap above which a pixel is in the box
        (paper: 0.1). An image with no pixel above it keeps the whole image.
    crop_update_every : int, default=5
        Epochs between box updates.
    crop_warmup : int, default=5
        Epochs of plain random crops before the first box update (the paper
        warms up and updates every fifth of the run: 20 of 100 epochs on
        ImageNet, 100 of 500 on CIFAR). Counted over the fit's history, so a
        warm start continues the schedule."""


class MultiViewSSL(BaseSSL):
    """A method that trains on several random views of every image.

    Subclasses call :meth:`_views` for their views; ``augment`` and ``crop``
    (how crop boxes are drawn) are therefore the same for all of them. In a
    subclass docstring the placeholder ``view_parameters`` in braces expands
    to the parameters below, as ``common_parameters`` does to the shared ones.

    Parameters
    ----------
    {view_parameters}
    """

    _params = {"augment": None, "crop": "random", "crop_alpha": 0.6, "crop_threshold": 0.1,
               "crop_update_every": 5, "crop_warmup": 5}
    _doc_sections = {"view_parameters": VIEW_DOC}
    _parameter_constraints = {
        **BaseSSL._parameter_constraints,
        "augment": [Augment, tuple, None],
        "crop": [StrOptions({"random", "contrastive"})],
        "crop_alpha": [Interval(Real, 0, None, closed="neither")],
        "crop_threshold": [Interval(Real, 0, 1, closed="left")],
        "crop_update_every": [Interval(Integral, 1, None, closed="left")],
        "crop_warmup": [Interval(Integral, 0, None, closed="left")],
    }

    def _validate_params(self):
        super()._validate_params()
        augment = self.augment
        if isinstance(augment, tuple) and not (augment and all(isinstance(a, Augment) for a in augment)):
            raise InvalidParameterError(
                f"The 'augment' parameter of {type(self).__name__} must be an Augment, a non-empty "
                f"tuple of Augment (one per view) or None. Got {augment!r} instead.")

    # The Augment classmethod giving the method's published recipe (``augment=None``).
    _recipe = "moco_v2"

    def _default_augment(self, image_size, channels):
        return getattr(Augment, self._recipe)(min(image_size), channels)

    def _views(self, x, n_views=2):
        """``n_views`` independent augmentations of the batch ``x``; view ``i`` uses
        ``augment_[i % len(augment_)]`` when ``augment_`` is a tuple."""
        augments = self.augment_ if isinstance(self.augment_, tuple) else (self.augment_,)
        boxes = self._crop_boxes()
        crop = {} if boxes is None else {"boxes": boxes, "center_alpha": self.crop_alpha}
        return [self._augment(x, augments[i % len(augments)], **crop) for i in range(n_views)]

    # ------------------------------------------------------- ContrastiveCrop
    def _build_networks(self):
        super()._build_networks()
        if self.crop == "contrastive":
            # Built with the networks so checkpoints and saved files restore it as they are.
            self.networks_["crop_boxes"] = CropBoxes(getattr(self, "_n_train", 0))

    def _crop_boxes(self):
        """Boxes of the current batch, or ``None`` for plain random crops."""
        if self.crop != "contrastive" or len(self.history_) < self.crop_warmup:
            return None
        index = getattr(self, "_batch_index", None)
        if index is None or "crop_boxes" not in self.networks_:
            return None
        return self.networks_["crop_boxes"].boxes[index]

    def _before_epoch(self, images, epoch):
        super()._before_epoch(images, epoch)
        if self.crop != "contrastive":
            return
        n = len(images)
        if "crop_boxes" not in self.networks_ or len(self.networks_["crop_boxes"]) != n:
            # New fit, or a warm start on another training set: whole images.
            self.networks_["crop_boxes"] = CropBoxes(n).to(self._generator.device)
        if epoch >= self.crop_warmup and (epoch - self.crop_warmup) % self.crop_update_every == 0:
            self.networks_["crop_boxes"].boxes.copy_(self._locate(images))

    def _locate(self, images):
        """Object boxes of the stored training images from the current backbone (eval mode)."""

        def boxes(x):
            maps = self.backbone_.feature_maps(self._standardize(x), stage=-1)
            return feature_map_boxes(maps, self.crop_threshold, x.shape[-2:])

        return torch.from_numpy(self._map_images(images, boxes))




MULTI_CROP_DOC = """n_global_crops : int, default=2
        Large views per image, at the working size (``image_size``), with crop
        area fractions in ``global_crop_scale``.
    n_local_crops : int or "auto", default="auto"
        Small views per image, at ``local_crop_size``, with crop area
        fractions in ``local_crop_scale``; 0 trains on the global crops alone.
        ``"auto"``: the papers' 6 from a working size of 28 pixels (local
        crops of 12 pixels or more), none below, where a local crop would be
        3 or 4 pixels of the object. (Not a measured gain: on the 8-px digits
        the collapse first seen with 6 local crops happened without them too,
        and came from the heads; see SwAV and DINO.).
    global_crop_scale, local_crop_scale : tuple (low, high), default=(0.4, 1.0) and (0.05, 0.4)
        Crop area as a fraction of the image, for the global and the local
        crops; they replace the ``crop_scale`` of ``augment`` and
        ``local_augment``.
    local_crop_size : int, tuple (h, w) or None, default=None
        Resolution of the local crops. ``None``: the papers' ratio 96/224 of
        the working size, at least 4 pixels. The CNNs pool any size; the ViT
        computes the position embeddings of the smaller patch grid.
    local_augment : skssl.augment.Augment or None, default=None
        Colour, blur and flip pipeline of the local crops (``None``: the
        method's recipe); ``local_augment_`` holds what was used."""


def _scale(value, name):
    if not (isinstance(value, tuple) and len(value) == 2 and 0 < value[0] <= value[1] <= 1):
        raise InvalidParameterError(f"{name} must be a tuple (low, high) with 0 < low <= high <= 1; got {value!r}.")
    return tuple(float(v) for v in value)


class MultiCropSSL(MultiViewSSL):
    """A view method with multi-crop (Caron et al. 2020): a few global and several small local views.

    ``_multi_crop_views`` returns the global crops of a batch as one tensor
    ``(n_global_crops * n, c, h, w)`` and the local crops as another at their
    own resolution, each made by one batched call on the device; a method
    runs each group through its networks in one pass. In a subclass docstring
    the placeholder ``multi_crop_parameters`` in braces expands to the
    parameters below.

    Parameters
    ----------
    {multi_crop_parameters}
    """

    _params = {"n_global_crops": 2, "n_local_crops": "auto", "global_crop_scale": (0.4, 1.0),
               "local_crop_scale": (0.05, 0.4), "local_crop_size": None, "local_augment": None}
    _doc_sections = {"multi_crop_parameters": MULTI_CROP_DOC}
    _parameter_constraints = {
        **MultiViewSSL._parameter_constraints,
        "n_global_crops": [Interval(Integral, 2, None, closed="left")],
        "n_local_crops": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "global_crop_scale": [tuple],
        "local_crop_scale": [tuple],
        "local_crop_size": [Interval(Integral, 1, None, closed="left"), tuple, None],
        "local_augment": [Augment, None],
    }
    # The papers' ratio of local to global crop size: 96 and 224 pixels on ImageNet.
    _local_ratio = 96 / 224

    def _validate_params(self):
        super()._validate_params()
        _scale(self.global_crop_scale, "global_crop_scale")
        _scale(self.local_crop_scale, "local_crop_scale")
        size = self.local_crop_size
        if isinstance(size, tuple) and not (len(size) == 2 and all(isinstance(s, Integral) and s >= 1 for s in size)):
            raise InvalidParameterError(f"local_crop_size must be a positive int or (h, w); got {size!r}.")

    def _default_local_augment(self, image_size, channels):
        """The method's pipeline for local crops (colour, blur, flip; the crop scale is replaced); ``image_size`` (h, w)."""
        return self._default_augment(image_size, channels)

    def _before_epoch(self, images, epoch):
        super()._before_epoch(images, epoch)
        # What the crops use: the pipelines with the crop scales of this estimator.
        size, channels = self._working_size(), self.image_shape_[2]
        augments = self.augment_ if isinstance(self.augment_, tuple) else (self.augment_,)
        augments = tuple(replace(a, crop_scale=self.global_crop_scale) for a in augments)
        self.augment_ = augments if len(augments) > 1 else augments[0]
        self.local_augment_ = replace(self.local_augment or self._default_local_augment(size, channels),
                                      crop_scale=self.local_crop_scale)

    # "auto": local crops from this working size on.
    _local_crops_from = 28

    def _n_local(self):
        if self.n_local_crops != "auto":
            return int(self.n_local_crops)
        return 6 if min(self._working_size()) >= self._local_crops_from else 0

    def _local_size(self):
        if self.local_crop_size is not None:
            size = self.local_crop_size
            return (size, size) if isinstance(size, Integral) else tuple(int(s) for s in size)
        return tuple(max(4, round(s * self._local_ratio)) for s in self._working_size())

    def _multi_crop_views(self, x):
        """``(global_crops, local_crops)`` of the batch ``x``: view-major tensors, ``None`` without local crops.

        Rows ``[i * n:(i + 1) * n]`` of each are view ``i`` of the ``n`` images.
        """
        augments = self.augment_ if isinstance(self.augment_, tuple) else (self.augment_,)
        boxes = self._crop_boxes()
        crop = {} if boxes is None else {"boxes": boxes, "center_alpha": self.crop_alpha}
        globals_ = torch.cat([self._augment(x, augments[i % len(augments)], **crop)
                              for i in range(self.n_global_crops)])
        k = self._n_local()
        if not k:
            return globals_, None
        if boxes is not None:
            crop["boxes"] = boxes.repeat(k, 1)
        # All local crops of the batch in one call: one warp straight to the small size.
        locals_ = self._augment(x.repeat(k, 1, 1, 1), self.local_augment_, size=self._local_size(), **crop)
        return globals_, locals_

