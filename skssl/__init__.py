"""skssl: self-supervised learning for images, as scikit-learn estimators."""

from .base import BaseSSL
from .contrastive import SimCLR
from .datasets import load_digits_images, load_fashion_mnist
from .evaluation import few_label_score, knn_score, linear_probe_score
from .pretext import RotationSSL

__version__ = "0.1.0"

__all__ = [
    "BaseSSL",
    "RotationSSL",
    "SimCLR",
    "few_label_score",
    "knn_score",
    "linear_probe_score",
    "load_digits_images",
    "load_fashion_mnist",
]
