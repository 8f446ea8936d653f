"""Self-supervised learning from video: clips in, one embedding per video (or per frame) out."""

from ._base import VideoSSL
from .frame_order import FrameOrderSSL
from .predictive_coding import PredictiveCodingSSL
from .temporal import TemporalClassificationSSL, TemporalContrastiveSSL

__all__ = ["VideoSSL", "FrameOrderSSL", "TemporalContrastiveSSL", "TemporalClassificationSSL", "PredictiveCodingSSL"]
