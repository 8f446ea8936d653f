"""Meta-learning under self-supervision: episodes made from unlabelled images."""

from .unsupervised import UnsupervisedMetaSSL

__all__ = ["UnsupervisedMetaSSL"]
