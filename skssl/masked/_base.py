"""What MAE and BEiT share: a ViT backbone ("auto" is ViT-Tiny) and token pooling."""

from sklearn.utils._param_validation import StrOptions
from torch import nn

from .._vit import vit_parts
from ..backbones import build_backbone
from ..base import BaseSSL


class MaskedImageModel(BaseSSL):
    """Base of the masked-image-modelling methods; not used directly.

    ``pool="mean"`` embeds an image as the mean of its patch tokens,
    ``"cls"`` as its class token (both at backbone stage ``stage``).
    """

    _params = {"backbone": "auto", "pool": "mean"}
    _parameter_constraints = {**BaseSSL._parameter_constraints, "pool": [StrOptions({"mean", "cls"})]}

    def _build_networks(self):
        # As BaseSSL's, except that "auto" is ViT-Tiny and other backbones are refused.
        c, size = self.image_shape_[2], self._working_size()
        backbone = build_backbone("vit_tiny" if self.backbone == "auto" else self.backbone, c, size)
        vit_parts(backbone, type(self).__name__)
        dims = backbone.stage_dims(c, size)
        if not -len(dims) <= self.stage < len(dims):
            raise ValueError(f"stage={self.stage} but the backbone has {len(dims)} stages (valid: {-len(dims)} to {len(dims) - 1}).")
        if self.pool == "cls" and self.stage % len(dims) == 0:
            raise ValueError(f"pool='cls' at stage={self.stage} (the patch embedding) would embed every image as the same "
                             "learned class token, which no block has seen the image through yet; use a later stage or pool='mean'.")
        self.embedding_dim_ = int(dims[self.stage])
        self.networks_ = nn.ModuleDict({"backbone": backbone})

    def _encode(self, x, stage=-1):
        tokens = self.backbone_.feature_maps(self._standardize(x), stage)
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def _vit_parts(self):
        """The backbone's patch embedding and its block groups."""
        return vit_parts(self.backbone_, type(self).__name__)

    @staticmethod
    def _vit_blocks(groups, tokens):
        for group in groups:
            tokens = group(tokens)
        return tokens
