"""NoisyStudentClassifier: the noised student beats its teacher; pseudo-label selection and history."""

import numpy as np
import pytest

from skssl import FineTuneClassifier, NoisyStudentClassifier
from skssl.semi.noisy_student import balanced_selection


@pytest.fixture(scope="module")
def labels_alone_teacher(digits_few_labels):
    X, y, _, _ = digits_few_labels
    return FineTuneClassifier(ssl=None, max_epochs=30, batch_size=32, random_state=0).fit(X, y)


def test_noisy_student_beats_its_teacher(digits_few_labels, labels_alone_teacher):
    X, y, X_test, y_test = digits_few_labels
    teacher_score = labels_alone_teacher.score(X_test, y_test)
    student = NoisyStudentClassifier(teacher=labels_alone_teacher, max_epochs=20, random_state=0).fit(X, y)
    # Measured: teacher 0.891, student 0.920 (on main's loop with its own epoch-order generator: 0.899 and
    # 0.938; with seed 1 there, 0.913 and 0.930). At 10 student epochs the gain was -0.002 to +0.024
    # across seeds and loops: the noised student needs the longer schedule.
    assert student.score(X_test, y_test) >= teacher_score + 0.01
    assert student.teacher_ is labels_alone_teacher
    (record,) = student.history_
    assert record["teacher_labelled_accuracy"] >= 0.95 and record["n_pseudo_labelled"] == (y < 0).sum()
    assert 0 < record["mean_confidence"] < 1 and record["student_labelled_accuracy"] >= 0.9
    assert record["pseudo_label_counts"] == [120] * 10  # class-balanced selection
    assert len(record["epochs"]) == 20


def test_class_balanced_selection_keeps_the_most_confident_and_repeats_rare_classes():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.55, 0.45]])
    chosen = balanced_selection(p, np.arange(6), threshold=0.58, rng=np.random.RandomState(0))
    # 0.55 is under the threshold; 4 of class 0 and 1 of class 1 kept: K = 2 of each.
    assert sorted(chosen.tolist()) == [0, 1, 4, 4]


def test_iterations_threshold_and_hard_labels(small_xy):
    X, y = small_xy
    clf = NoisyStudentClassifier(n_iterations=2, threshold=0.99, pseudo_labels="hard", class_balance=False,
                                 max_epochs=1, batch_size=32, random_state=0).fit(X, y)
    assert [r["iteration"] for r in clf.history_] == [1, 2]
    assert all(r["n_selected"] == r["n_pseudo_labelled"] <= (y < 0).sum() for r in clf.history_)
    assert clf.predict(X).shape == (len(X),)
