"""skssl: self-supervised learning for images and video, as scikit-learn estimators."""

from .base import BaseSSL
from .baselines import RandomInit
from .contrastive import BYOL, DINO, PIRL, BarlowTwins, InstanceDiscriminationSSL, MoCo, SimCLR, SimSiam, SwAV, VICReg
from .datasets import load_digits_images, load_fashion_mnist
from .diagnostics import (alignment_uniformity, compare_pretexts, implicit_dimensionality, pretext_generalization,
                          random_label_baseline)
from .evaluation import FewShotResult, embedding_diagnostics, few_label_score, few_shot_score, knn_score, linear_probe_score
from .masked import BEiT, MAE
from .meta import UnsupervisedMetaSSL
from .persistence import load
from .semi import DistilledClassifier, FineTuneClassifier, NoisyStudentClassifier
from .pretext import (
    GANSSL,
    ColorizationSSL,
    DeepClusterSSL,
    DenoisingAutoencoderSSL,
    InpaintingSSL,
    JigsawSSL,
    RelativePositionSSL,
    RotationSSL,
    SplitBrainSSL,
    SuperResolutionSSL,
    SyntheticTransferSSL,
)
from .video import FrameOrderSSL, PredictiveCodingSSL, TemporalClassificationSSL, TemporalContrastiveSSL

__version__ = "0.2.0"

# Every public self-supervised estimator of images, in the order the field developed them.
IMAGE_ESTIMATORS = (
    RotationSSL, JigsawSSL, RelativePositionSSL, ColorizationSSL, SplitBrainSSL, InpaintingSSL,
    SuperResolutionSSL, DenoisingAutoencoderSSL, DeepClusterSSL, GANSSL,
    InstanceDiscriminationSSL, PIRL, SimCLR, MoCo, BYOL, SimSiam, BarlowTwins, VICReg, SwAV, DINO,
    BEiT, MAE, SyntheticTransferSSL, UnsupervisedMetaSSL,
)
# ... and of video clips (n, t, h, w[, c]).
VIDEO_ESTIMATORS = (FrameOrderSSL, TemporalContrastiveSSL, TemporalClassificationSSL, PredictiveCodingSSL)
ESTIMATORS = IMAGE_ESTIMATORS + VIDEO_ESTIMATORS

__all__ = [
    "BaseSSL", "RandomInit", "ESTIMATORS", "IMAGE_ESTIMATORS", "VIDEO_ESTIMATORS", "load",
    *(cls.__name__ for cls in ESTIMATORS),
    "embedding_diagnostics", "few_label_score", "few_shot_score", "FewShotResult", "knn_score", "linear_probe_score",
    "alignment_uniformity", "compare_pretexts", "implicit_dimensionality", "pretext_generalization",
    "random_label_baseline",
    "load_digits_images", "load_fashion_mnist",
    "FineTuneClassifier", "DistilledClassifier", "NoisyStudentClassifier",
]
