"""From embedding to classifier: fine-tuning, distillation and Noisy Student (``y == -1`` is unlabelled)."""

from .fine_tune import FineTuneClassifier

__all__ = ["FineTuneClassifier"]
