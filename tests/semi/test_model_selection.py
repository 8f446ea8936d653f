"""The classifiers inside Pipeline and GridSearchCV with unlabelled rows (y == -1)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skssl import FineTuneClassifier, RotationSSL, SimCLR

PRETRAINED_ON = []  # rows each SSL fit saw


class RecordingRotation(RotationSSL):
    def fit(self, X, y=None):
        PRETRAINED_ON.append(len(X))
        return super().fit(X, y)


@pytest.mark.filterwarnings("ignore:The least populated class")  # 120 images: some digits have few labels
def test_grid_search_over_ssl_trains_on_unlabelled_rows_and_scores_labelled_ones(small_xy):
    X, y = small_xy  # 120 images, 60 labelled
    pipe = Pipeline([("scale", FunctionTransformer(lambda Z: Z / 16.0)),
                     ("clf", FineTuneClassifier(max_epochs=1, batch_size=32, random_state=0))])
    grid = {"clf__ssl": [RecordingRotation(max_epochs=1, batch_size=32),
                         SimCLR(max_epochs=1, batch_size=32, projection_dim=8)]}
    # Stratifying on y treats -1 as one more class: every fold gets its share of unlabelled rows.
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, grid, cv=cv, refit=False).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # Each RotationSSL pretraining saw its whole training fold, 40 of whose 80 rows are unlabelled.
    assert PRETRAINED_ON == [80, 80, 80]
    # A fold's score is the accuracy on its labelled rows only.
    train, test = next(cv.split(X, y))
    fold = clone(pipe).set_params(clf__ssl=grid["clf__ssl"][0]).fit(X[train], y[train])
    labelled = test[y[test] >= 0]
    expected = accuracy_score(y[labelled], fold.predict(X[labelled]))
    assert search.cv_results_["split0_test_score"][0] == expected
