"""From embedding to classifier: fine-tuning, distillation and Noisy Student (``y == -1`` is unlabelled)."""

from .distillation import DistilledClassifier
from .fine_tune import FineTuneClassifier
from .noisy_student import NoisyStudentClassifier

__all__ = ["FineTuneClassifier", "DistilledClassifier", "NoisyStudentClassifier"]
