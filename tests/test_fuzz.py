"""Input fuzzing: any array either fits and embeds to finite float32, or is refused by name.

Every public estimator is fuzzed over shapes (2-D feature counts, 3-D and 4-D
images), dtypes, value ranges (tiny, huge, negative, constant, near the float
maximum), NaN/inf, empty and one-sample inputs and odd ``image_shape``s. The
contract: ``fit`` + ``transform`` give a finite float32 ``(n, embedding_dim_)``
array, or a ValueError/TypeError whose message names the problem; never an
exception from inside torch, never NaN/inf in the embedding.

Arrays are built with numpy from a few drawn parameters (not element by
element), so each example is cheap and shrinks to a readable case.
"""

import math
import re
from numbers import Integral, Real

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skssl
from skssl.base import BaseSSL

# Every BaseSSL subclass exported by skssl; extra constructor arguments (to
# keep a method tiny) go in EXTRA_PARAMS under its class name.
ESTIMATORS = [
    obj for name in skssl.__all__
    if isinstance(obj := getattr(skssl, name), type) and issubclass(obj, BaseSSL) and obj is not BaseSSL
]
EXTRA_PARAMS = {"SimCLR": {"projection_dim": 16}}
# Valid finite input with two or more samples must fit, for every estimator,
# except where a method cannot use it by design: listed here as
# class name -> (pattern its refusal must match, the reason).
REFUSES_BY_DESIGN = {
    "ColorizationSSL": (r"colou?r|RGB|3 channels|channel",
                        "predicts colour from lightness, so it needs 3-channel images and refuses the others"),
    # Video methods learn from time: 2-D rows are read as frames, image arrays and image_shape are refused.
    **{name: (r"clips", "learns from clips (n, t, h, w[, c]); image arrays and image_shape are refused by name")
       for name in ("FrameOrderSSL", "TemporalContrastiveSSL", "TemporalClassificationSSL", "PredictiveCodingSSL")},
}
TINY = dict(max_epochs=1, batch_size=8, random_state=0)

# A refusal must name what is wrong with the input.
KEYWORDS = re.compile(r"NaN|infinity|sample|feature|image_shape|dtype|channel|shape|size|parameter", re.IGNORECASE)
DTYPES = ["uint8", "int32", "int64", "float16", "float32", "float64", "bool"]
VALUE_KINDS = ["unit", "integers", "tiny", "huge", "extreme", "negative", "constant"]

# Each fit trains a real backbone for one step, so examples are few; the
# whole file stays under a minute on 2 CPU cores.
def fuzz(max_examples):
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# sklearn's finiteness check sums X first; for +-1e308 that sum overflows and
# numpy warns from inside sklearn. The value is still accepted correctly.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning",
                                        "ignore:overflow encountered in reduce:RuntimeWarning")


def _make(cls, **params):
    return cls(**{**TINY, **EXTRA_PARAMS.get(cls.__name__, {}), **params})


def _ids(cls):
    return cls.__name__


def _values(rng, kind, shape):
    if kind == "unit":
        return rng.random(shape)
    if kind == "integers":
        return rng.integers(0, 256, shape).astype(np.float64)
    if kind == "tiny":
        return rng.random(shape) * 1e-300
    if kind == "huge":
        return rng.uniform(-1, 1, shape) * 1e30
    if kind == "extreme":
        return rng.choice([-1.7e308, 0.0, 1.7e308], shape)
    if kind == "negative":
        return -rng.random(shape) * 1e3
    return np.full(shape, rng.choice([0.0, -3.0, 255.0, 1e30, -1.7e308]))


def _cast(values, dtype):
    dtype = np.dtype(dtype)
    if dtype == bool:
        return values > np.median(values) if values.size else values.astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # float(int64 max) rounds past it, so 64-bit integers get half their range.
        low, high = (info.min, info.max) if info.bits <= 32 else (info.min // 2, info.max // 2)
        return np.clip(values, low, high).astype(dtype)
    with np.errstate(over="ignore"):
        return values.astype(dtype)  # may overflow to inf (float16): refused by name below


@st.composite
def arrays(draw, min_samples=0, max_samples=10):
    n = draw(st.integers(min_samples, max_samples))
    ndim = draw(st.sampled_from([2, 3, 4]))
    if ndim == 2:
        shape = (n, draw(st.integers(1, 100)))
    else:
        shape = (n, draw(st.integers(1, 20)), draw(st.integers(1, 20)))
        if ndim == 4:
            shape += (draw(st.sampled_from([1, 2, 3, 4])),)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return _cast(_values(rng, draw(st.sampled_from(VALUE_KINDS)), shape), draw(st.sampled_from(DTYPES)))


def _check_refusal(exc, *expected):
    """A refusal is a ValueError/TypeError from skssl or sklearn naming the problem."""
    assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    if expected:
        assert any(word in message for word in expected), f"expected one of {expected} in: {message}"
    else:
        assert KEYWORDS.search(message), f"refusal does not name the problem: {message}"
    # Never an error raised from inside torch.
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert "/torch/" not in tb.tb_frame.f_code.co_filename.replace("\\", "/"), tb.tb_frame.f_code.co_filename


def _check_embedding(est, X):
    Z = est.transform(X)
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32
    assert Z.shape == (len(X), est.embedding_dim_)
    assert np.isfinite(Z).all(), "NaN or inf in the embedding"
    return Z


def _fit_or_refuse(cls, X, expected_error=None, **params):
    """Fit ``cls`` on X; check the embedding or the refusal. Returns the estimator or None."""
    try:
        est = _make(cls, **params).fit(X)
    except Exception as exc:  # noqa: BLE001 - the point is to inspect any failure
        if expected_error is not None:
            _check_refusal(exc, *expected_error)
            return None
        by_design = REFUSES_BY_DESIGN.get(cls.__name__)
        if by_design is None or not re.search(by_design[0], str(exc), re.IGNORECASE):
            raise AssertionError(f"{cls.__name__} refused a valid input {X.dtype} {X.shape}: {exc!r}") from exc
        _check_refusal(exc)
        return None
    assert expected_error is None, f"{cls.__name__} accepted an input that should be refused ({expected_error})"
    _check_embedding(est, X)
    _check_embedding(est, X[:1])
    return est


# ------------------------------------------------------------------- the fuzz
@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
@fuzz(8)
@given(X=arrays(max_samples=6))
def test_any_array_fits_to_finite_embeddings_or_is_refused_by_name(cls, X):
    finite = np.isfinite(X.astype(np.float64)).all()
    expected = (("sample",) if len(X) < 2 else ()) + (() if finite else ("NaN", "infinity"))
    expected = expected or None  # either problem may be reported first
    _fit_or_refuse(cls, X, expected)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
@fuzz(6)
@given(X=arrays(min_samples=2, max_samples=4), poison=st.sampled_from([np.nan, np.inf, -np.inf]),
       where=st.integers(0, 10**6), at_transform=st.booleans())
def test_nan_and_inf_are_refused_by_name(cls, X, poison, where, at_transform):
    X = X.astype(np.float64 if X.dtype.kind != "f" else X.dtype)
    bad = X.copy()
    bad.flat[where % bad.size] = poison
    word = ("NaN",) if np.isnan(poison) else ("infinity",)
    if not at_transform:
        _fit_or_refuse(cls, bad, word)
        return
    est = _fit_or_refuse(cls, X) if np.isfinite(X).all() else None
    if est is not None:
        with pytest.raises((ValueError, TypeError)) as info:
            est.transform(bad)
        _check_refusal(info.value, *word)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
def test_empty_and_single_sample_inputs(cls):
    X = np.random.default_rng(0).random((4, 8, 8))
    _fit_or_refuse(cls, X[:0], ("sample",))
    _fit_or_refuse(cls, X[:1], ("sample",))
    est = _fit_or_refuse(cls, X[:2])
    if est is not None:
        with pytest.raises(ValueError, match="sample"):
            est.transform(X[:0])
        _check_embedding(est, X[:1])


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
@fuzz(5)
@given(X=arrays(min_samples=2, max_samples=4), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["huge", "extreme", "negative", "tiny", "constant"]), dtype=st.sampled_from(DTYPES))
def test_transform_of_values_outside_the_fitted_range_stays_finite(cls, X, seed, kind, dtype):
    if not np.isfinite(X.astype(np.float64)).all():
        return
    est = _fit_or_refuse(cls, X)
    if est is None:
        return
    other = _cast(_values(np.random.default_rng(seed), kind, X.shape), dtype)
    if np.isfinite(other.astype(np.float64)).all():
        _check_embedding(est, other)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
@fuzz(2)
@given(seed=st.integers(0, 2**16), fit_dtype=st.sampled_from(DTYPES[:-1]))
def test_same_values_embed_the_same_whatever_the_dtype(cls, seed, fit_dtype):
    values = np.random.default_rng(seed).integers(0, 128, (4, 8, 8))
    est = _fit_or_refuse(cls, values.astype(fit_dtype))
    if est is None:
        return
    reference = est.transform(values.astype(np.float64))
    for dtype in DTYPES[:-1]:
        np.testing.assert_allclose(est.transform(values.astype(dtype)), reference, atol=1e-5, err_msg=dtype)


# ---------------------------------------------------------------- image_shape
def _expected_shape(image_shape, n_features):
    """The (h, w, c) a valid ``image_shape`` gives rows of ``n_features``, else None."""
    if len(image_shape) not in (2, 3):
        return None
    if not all(isinstance(s, (Integral, Real)) and not isinstance(s, (bool, np.bool_)) for s in image_shape):
        return None
    if not all(float(s).is_integer() and s >= 1 for s in image_shape):
        return None
    shape = tuple(int(s) for s in image_shape) + ((1,) if len(image_shape) == 2 else ())
    return shape if n_features <= math.prod(shape) <= 2 * n_features else None


odd_sizes = st.one_of(st.integers(-2, 12), st.sampled_from([0, 2.5, 4.0, None, True, "8", np.int64(4), (2,)]))


@st.composite
def valid_image_shapes(draw):
    shape = (draw(st.integers(1, 8)), draw(st.integers(1, 8))) + draw(st.sampled_from([(), (1,), (3,)]))
    size = math.prod(shape)
    n_features = draw(st.integers(-(-size // 2), size))
    return shape, n_features


@st.composite
def odd_image_shapes(draw):
    return tuple(draw(st.lists(odd_sizes, min_size=0, max_size=4))), draw(st.integers(1, 100))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
@fuzz(10)
@given(case=st.one_of(valid_image_shapes(), odd_image_shapes()), as_list=st.booleans())
def test_odd_image_shapes_fit_or_are_refused_by_name(cls, case, as_list):
    image_shape, n_features = case
    X = np.random.default_rng(n_features).random((4, n_features))
    expected = _expected_shape(image_shape, n_features)
    est = _fit_or_refuse(cls, X, None if expected else ("image_shape",),
                         image_shape=list(image_shape) if as_list else image_shape)
    if est is not None:
        assert est.image_shape_ == expected


@pytest.mark.parametrize("cls", ESTIMATORS, ids=_ids)
@fuzz(12)
@given(hw=st.tuples(st.integers(1, 12), st.integers(1, 12)), channels=st.sampled_from([None, 1, 2, 3]),
       image_shape=st.lists(st.integers(0, 12), min_size=1, max_size=4).map(tuple))
def test_image_shape_must_match_3d_and_4d_input(cls, hw, channels, image_shape):
    shape = (4, *hw) + ((channels,) if channels else ())
    X = np.random.default_rng(0).random(shape)
    actual = hw + (channels or 1,)
    matches = len(image_shape) in (2, 3) and image_shape + ((1,) if len(image_shape) == 2 else ()) == actual
    _fit_or_refuse(cls, X, None if matches else ("image_shape",), image_shape=image_shape)


def _public_estimator_classes():
    """Every BaseSSL subclass without a leading underscore defined anywhere in the skssl package."""
    import importlib
    import inspect
    import pkgutil

    found = set()
    for info in pkgutil.walk_packages(skssl.__path__, "skssl."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseSSL) and obj is not BaseSSL and not name.startswith("_") and obj.__module__ == info.name:
                found.add(obj)
    return found


def test_fuzz_covers_every_public_estimator():
    public = _public_estimator_classes()
    assert set(skssl.ESTIMATORS) <= public and skssl.RandomInit in public
    missing = sorted(cls.__name__ for cls in public - set(ESTIMATORS))
    assert not missing, f"not fuzzed: {missing}"
    assert set(REFUSES_BY_DESIGN) <= {cls.__name__ for cls in ESTIMATORS}
