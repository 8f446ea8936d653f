"""Classic pretext tasks: predict something the image itself holds."""

from .autoencoder import DenoisingAutoencoderSSL
from .colorization import ColorizationSSL
from .context import RelativePositionSSL
from .deepcluster import DeepClusterSSL
from .gan import GANSSL
from .inpainting import InpaintingSSL
from .jigsaw import JigsawSSL
from .rotation import RotationSSL
from .split_brain import SplitBrainSSL
from .super_resolution import SuperResolutionSSL
from .synthetic_transfer import SyntheticTransferSSL

__all__ = [
    "ColorizationSSL",
    "DeepClusterSSL",
    "DenoisingAutoencoderSSL",
    "GANSSL",
    "InpaintingSSL",
    "JigsawSSL",
    "RelativePositionSSL",
    "RotationSSL",
    "SplitBrainSSL",
    "SuperResolutionSSL",
    "SyntheticTransferSSL",
]
