"""ContrastiveCrop's semantic-aware localisation (Peng et al., CVPR 2022).

Every few epochs the current backbone's last feature map locates the object in
each training image: its channel sum, min-max normalised per image and
upsampled to the image size, is thresholded, and the bounding box of what
survives is where later crops are centred. The centre-suppressed sampling
inside those boxes is part of the crop itself
(:func:`skssl.augment.crop_flip_affine_matrices`, ``boxes`` and
``center_alpha``), so one warp still does all the geometry of a batch.

Boxes are ``(x0, y0, x1, y1)`` fractions of the image width and height, with
``x1`` and ``y1`` exclusive: the whole image is ``(0, 0, 1, 1)``.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CropBoxes", "heatmap_boxes", "feature_map_boxes", "full_boxes"]


def full_boxes(n, device=None, dtype=torch.float32):
    """``n`` boxes covering the whole image, shape (n, 4)."""
    return torch.tensor([0.0, 0.0, 1.0, 1.0], device=device, dtype=dtype).repeat(n, 1)


def heatmap_boxes(heatmaps, threshold=0.1, size=None):
    """Bounding boxes of the pixels above ``threshold`` in min-max normalised heatmaps.

    Parameters
    ----------
    heatmaps : Tensor of shape (n, h, w)
        One activation map per image (any range).
    threshold : float, default=0.1
        Level in [0, 1] of the normalised map; pixels strictly above it belong
        to the object.
    size : tuple (H, W), optional
        Image size: the maps are upsampled (bilinear) to it before
        thresholding, as in the paper. ``None`` thresholds them as they are.

    Returns
    -------
    Tensor of shape (n, 4), float32
        ``(x0, y0, x1, y1)`` in fractions of the width and height. A map with
        no pixel above the threshold, or a constant one (no location
        information), gives the whole image.
    """
    n = heatmaps.shape[0]
    maps = heatmaps.detach().float()
    flat = maps.reshape(n, -1)
    low = flat.amin(1)[:, None, None]
    span = flat.amax(1)[:, None, None] - low
    maps = torch.where(span > 0, (maps - low) / span.clamp(min=1e-12), torch.zeros_like(maps))
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    mask = maps > threshold
    rows, cols = mask.any(2), mask.any(1)  # (n, H), (n, W)
    H, W = mask.shape[-2:]

    def extent(hits, length):
        first = hits.int().argmax(1)
        last = length - hits.flip(1).int().argmax(1)  # exclusive end
        return first.float() / length, last.float() / length

    y0, y1 = extent(rows, H)
    x0, x1 = extent(cols, W)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    return torch.where(rows.any(1, keepdim=True), boxes, full_boxes(n, boxes.device))


def feature_map_boxes(feature_maps, threshold=0.1, size=None):
    """Boxes from a backbone's unpooled output: heatmap = sum over channels.

    ``feature_maps`` of shape (n, c, h, w); anything without spatial axes
    (a vector or token output) gives whole-image boxes.
    """
    if feature_maps.ndim != 4:
        return full_boxes(feature_maps.shape[0], feature_maps.device)
    return heatmap_boxes(feature_maps.float().sum(1), threshold, size)


class CropBoxes(nn.Module):
    """Holds one crop box per training image as a buffer (pickled and moved with ``networks_``)."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("boxes", full_boxes(n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A saved estimator is rebuilt before its state is loaded, without knowing n.
        saved = state_dict.get(prefix + "boxes")
        if saved is not None and saved.shape != self.boxes.shape:
            self.boxes = torch.empty(saved.shape, dtype=self.boxes.dtype, device=self.boxes.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __len__(self):
        return self.boxes.shape[0]

    def extra_repr(self):
        return f"n={len(self)}"
