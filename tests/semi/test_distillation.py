"""DistilledClassifier: a small CNN distilled from a ResNet-18 teacher."""

import numpy as np
import pytest

from skssl import DistilledClassifier, FineTuneClassifier


def test_distillation_reads_the_fitted_teacher_and_rejects_other_classes(small_xy):
    X, y = small_xy
    teacher = FineTuneClassifier(ssl=None, max_epochs=1, batch_size=32, random_state=0).fit(X, y)
    student = DistilledClassifier(teacher=teacher, max_epochs=1, batch_size=32, random_state=0).fit(X, y)
    assert student.teacher_ is teacher and student.network_.backbone == "small_cnn"
    assert len(student.network_.history_) == 1 and student.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="fit the teacher on the same labels"):
        DistilledClassifier(teacher=teacher, max_epochs=1).fit(X, np.where(y >= 0, y % 3, -1))


@pytest.mark.slow
def test_small_cnn_distilled_from_resnet18_keeps_its_accuracy(digits_few_labels):
    # The issue also asks that the student beat the same small CNN trained on the labels alone.
    # Measured at this budget it does not, reliably: 0.897 against 0.891 on one epoch order,
    # 0.893 against 0.899 on the current one; a ResNet-18 trained from scratch on 100 digits
    # labels is no better a teacher than the small CNN (docs/semi.md). Only the kept accuracy,
    # which fails with the teacher's targets dropped, is asserted.
    X, y, X_test, y_test = digits_few_labels
    teacher = FineTuneClassifier(ssl=None, backbone="resnet18_cifar", max_epochs=30, batch_size=32,
                                 random_state=0).fit(X, y)
    student = DistilledClassifier(teacher=teacher, student_backbone="small_cnn", max_epochs=10,
                                  random_state=0).fit(X, y)
    teacher_score, student_score = teacher.score(X_test, y_test), student.score(X_test, y_test)
    assert student_score >= 0.95 * teacher_score
