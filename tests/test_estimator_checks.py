"""scikit-learn's own estimator checks, run over every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skssl import RotationSSL, SimCLR

# Tiny settings: the checks fit dozens of times on 2-D random data.
ESTIMATORS = [RotationSSL(max_epochs=2, batch_size=16), SimCLR(max_epochs=2, batch_size=16)]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)
