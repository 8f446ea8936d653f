"""Safe persistence: one file of plain data and tensors, loadable without running code.

Pickle (and joblib) can execute arbitrary code while loading, so they are only
for files you made yourself. :func:`save` writes a fitted (or unfitted)
estimator as a ``torch.save`` file that holds nothing but plain containers,
numbers, strings and tensors; :func:`load` reads it with
``torch.load(weights_only=True)``, which refuses every other Python object,
and rebuilds the estimator from its class (looked up among skssl's own
estimators, never imported by name), its parameters and its fitted
attributes.

File layout (``version`` 1)::

    {"format": "skssl", "version": 1, "skssl_version": str,
     "class": "skssl.pretext.rotation.RotationSSL",
     "params": {...}, "fitted": {...},          # plain data, see _encode
     "state_dict": {name: tensor},              # networks_.state_dict() on the CPU
     "backbone_state_dict": {name: tensor}}     # only for an nn.Module ``backbone``

An estimator held by another (the SSL estimator and fitted networks of a
:mod:`skssl.semi` classifier) is stored inside it as ``{"__estimator__":
record}``, a record of this same layout without the file markers' meaning.
"""

import copy
import importlib
import inspect
import os
import pkgutil
from dataclasses import fields

import numpy as np
import torch
from torch import nn

from ._checkpoint import atomic_save
from .augment import Augment

FORMAT = "skssl"
VERSION = 1

__all__ = ["save", "load"]


# ------------------------------------------------------------------ classes
def _roots():
    """The base classes whose skssl subclasses save and load: the SSL estimators and the classifiers of skssl.semi."""
    from .base import BaseSSL
    from .semi._base import SemiSupervisedClassifier

    return (BaseSSL, SemiSupervisedClassifier)


def _registry():
    """``"module.ClassName" -> class`` for every BaseSSL (or skssl.semi classifier) subclass defined in skssl."""
    found, stack = {}, [c for root in _roots() for c in root.__subclasses__()]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("skssl."):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def _resolve_class(name):
    """The skssl estimator class called ``name``; imports only skssl's own modules."""
    if not isinstance(name, str):
        raise ValueError(f"Not a valid skssl save: 'class' must be a string, got {type(name).__name__}.")
    registry = _registry()
    if name not in registry:
        # The class may live in a skssl module nobody imported yet. Only modules
        # found inside the installed package are candidates; the file's string
        # is compared with them, never imported itself.
        import skssl

        module = name.rpartition(".")[0]
        own = {m.name for m in pkgutil.walk_packages(skssl.__path__, "skssl.")}
        if module in own:
            importlib.import_module(module)
            registry = _registry()
    if name not in registry:
        raise ValueError(
            f"Not a valid skssl save: unknown estimator class {name!r}; only skssl's own "
            f"estimators (BaseSSL subclasses) can be loaded."
        )
    return registry[name]


def _class_name(estimator):
    cls = type(estimator)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(estimator, _roots()) or _registry().get(name) is not cls:
        raise ValueError(
            f"save() only stores skssl's own estimators (BaseSSL subclasses defined in skssl); "
            f"got {name}. Use pickle or joblib for your own classes, and only for trusted files."
        )
    return name


# ------------------------------------------------------------- plain data
# Non-plain values become one-key dicts tagged with one of these keys.
_TAGS = ("__augment__", "__optimizer__", "__device__", "__ndarray__", "__random_state__", "__tokenizer__", "__module__",
         "__estimator__")


def _optimizers():
    return {
        name: obj
        for name, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
    }


def _encode(value, where):
    """``value`` as plain data and tensors only; ``where`` names it in errors."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.shape == () and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, tuple):
        return tuple(_encode(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where} is a dict with non-string keys; save() cannot store it.")
        if len(value) == 1 and next(iter(value)) in _TAGS:
            raise ValueError(f"{where} is a dict whose only key is the reserved name {next(iter(value))!r}.")
        return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, Augment):
        return {"__augment__": {f.name: _encode(getattr(value, f.name), f"{where}.{f.name}") for f in fields(value)}}
    if isinstance(value, type) and _optimizers().get(value.__name__) is value:
        return {"__optimizer__": value.__name__}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.ndarray):
        try:
            data = torch.from_numpy(np.ascontiguousarray(value)).clone()
        except TypeError:  # object (e.g. feature names), strings, uint16, ...
            data = _encode(value.tolist(), where)
        return {"__ndarray__": data, "dtype": value.dtype.str if value.dtype != object else "object",
                "shape": tuple(int(s) for s in value.shape)}
    if isinstance(value, np.random.RandomState):
        kind, keys, pos, has_gauss, gauss = value.get_state()
        return {"__random_state__": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
    if type(value) is _tokenizer_class():  # skssl's own module: rebuilt from its sizes and weights
        sizes = {k: getattr(value, k) for k in ("in_channels", "patch_size", "n_tokens", "code_dim", "width")}
        return {"__tokenizer__": {"sizes": sizes, "state": _cpu_state(value)}}
    if isinstance(value, nn.Module):
        return {"__module__": f"{type(value).__module__}.{type(value).__qualname__}"}
    if isinstance(value, _roots()):
        # An estimator inside an estimator (a classifier's SSL estimator or fitted network).
        payload = _payload(value)
        if "backbone_state_dict" in payload:
            raise ValueError(f"{where} is a {type(value).__name__} with a custom nn.Module backbone, which save() "
                             f"cannot store inside another estimator. Use pickle or joblib for trusted files.")
        return {"__estimator__": payload}
    raise ValueError(
        f"{where} = {value!r} ({type(value).__name__}) cannot be stored as plain data; "
        f"save() only writes numbers, strings, containers, arrays, Augment, torch.optim "
        f"classes and devices. Use pickle or joblib for trusted files instead."
    )


def _decode(value, where):
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, dict):
        return value
    if len(value) == 1 or "__ndarray__" in value:
        tag = next((t for t in _TAGS if t in value), None)
        if tag == "__augment__":
            spec = value[tag]
            names = {f.name for f in fields(Augment)}
            if not isinstance(spec, dict) or not set(spec) <= names:
                raise ValueError(f"{where}: invalid Augment fields {spec!r}.")
            return Augment(**{k: _decode(v, f"{where}.{k}") for k, v in spec.items()})
        if tag == "__optimizer__":
            optimizer = _optimizers().get(value[tag]) if isinstance(value[tag], str) else None
            if optimizer is None:
                raise ValueError(f"{where}: {value[tag]!r} is not an optimizer class of torch.optim.")
            return optimizer
        if tag == "__device__":
            return torch.device(value[tag])
        if tag == "__ndarray__":
            data, dtype = value["__ndarray__"], value.get("dtype")
            array = data.numpy() if isinstance(data, torch.Tensor) else np.array(_decode(data, where), dtype=object)
            return array.astype(np.dtype(dtype), copy=True).reshape(value["shape"])
        if tag == "__random_state__":
            kind, keys, pos, has_gauss, gauss = value[tag]
            state = np.random.RandomState()
            state.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            return state
        if tag == "__tokenizer__":
            spec = value[tag]
            if not isinstance(spec, dict) or set(spec) != {"sizes", "state"} or not isinstance(spec["sizes"], dict):
                raise ValueError(f"{where}: invalid tokenizer record.")
            tokenizer = _tokenizer_class()(**{k: int(v) for k, v in spec["sizes"].items()})
            tokenizer.load_state_dict(spec["state"], strict=True)
            return tokenizer
        if tag == "__module__":
            return value  # resolved by load() from its ``backbone`` argument
        if tag == "__estimator__":
            if not isinstance(value[tag], dict):
                raise ValueError(f"{where}: invalid estimator record.")
            return _from_payload(value[tag], None, where)
    return {k: _decode(v, f"{where}[{k!r}]") for k, v in value.items()}


def _tokenizer_class():
    from .masked.tokenizer import VQTokenizer

    return VQTokenizer


# --------------------------------------------------------------- save/load
def _cpu_state(module):
    state = {}
    for name, tensor in module.state_dict().items():
        if nn.parameter.is_lazy(tensor):
            continue  # a lazy module not yet called has no values to keep
        tensor = tensor.detach().cpu()
        # A view would drag its whole storage into the file.
        if tensor.untyped_storage().nbytes() != tensor.nbytes:
            tensor = tensor.clone()
        state[name] = tensor
    return state


def save(estimator, path):
    """Write ``estimator`` to ``path`` as one file that loads without running code.

    Parameters
    ----------
    estimator : skssl estimator (a BaseSSL subclass), fitted or not
        The estimator to write.
    path : str or os.PathLike
        Destination. It is replaced atomically: readers see the old file or
        the complete new one, never half a file.

    Raises
    ------
    ValueError
        If the estimator is not one of skssl's own classes, or a parameter
        or fitted attribute cannot be stored as plain data.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl import RotationSSL, load, load_digits_images
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> model = RotationSSL(max_epochs=1, random_state=0).fit(X[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "rotation.skssl")
    >>> model.save(path)
    >>> bool((load(path).transform(X[:5]) == model.transform(X[:5])).all())
    True
    """
    atomic_save(os.fspath(path), _payload(estimator))


def _payload(estimator):
    """The plain-data record of ``estimator`` that :func:`save` writes."""
    from . import __version__

    name = _class_name(estimator)
    params = estimator.get_params(deep=False)
    fitted = {k: v for k, v in vars(estimator).items() if k not in params and k != "networks_"}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "skssl_version": __version__,
        "class": name,
        "params": {k: _encode(v, f"parameter {k}") for k, v in params.items()},
        "fitted": {k: _encode(v, f"fitted attribute {k}") for k, v in fitted.items()},
        "state_dict": _cpu_state(estimator.networks_) if "networks_" in vars(estimator) else {},
    }
    if isinstance(params.get("backbone"), nn.Module):
        payload["backbone_state_dict"] = _cpu_state(params["backbone"])
    return payload


def _upgrade_from_0_1(class_name, params, fitted, skssl_version):
    """Parameters of files written before skssl 0.2, mapped to the same networks.

    skssl 0.1 called the CIFAR-stem ResNet-18 ``"resnet18"`` (now
    ``"resnet18_cifar"``; ``"resnet18"`` has the ImageNet stem) and ``"auto"``
    chose it for every image of 32 px or more (now only up to 63 px). Its
    DeepCluster had no Sobel filter and its Jigsaw chose permutations by
    their minimum distance: parameters whose new defaults differ.
    """
    try:
        version = tuple(int(p) for p in str(skssl_version).split(".")[:2])
    except ValueError:
        version = (0, 1)
    if version >= (0, 2):
        return
    shape = fitted.get("image_shape_")
    if params.get("backbone") == "resnet18" or (
        params.get("backbone") == "auto" and isinstance(shape, (tuple, list)) and min(shape[:2]) >= 64
    ):
        params["backbone"] = "resnet18_cifar"
    if class_name == "DeepClusterSSL":
        params.setdefault("sobel", False)
    if class_name == "JigsawSSL":
        params.setdefault("permutation_selection", "min")


def _invalid(path, reason):
    return ValueError(f"{os.fspath(path)!r} is not a valid skssl save: {reason}")


def load(path, *, backbone=None):
    """Read an estimator written by :func:`save`; never executes code from the file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save` or ``estimator.save``.
    backbone : nn.Module, optional
        Required when the estimator was saved with its own ``nn.Module``
        backbone, which cannot be stored as plain data: a module of the same
        architecture (its weights are replaced by the saved ones; the module
        itself is not modified).

    Returns
    -------
    estimator
        Same class, parameters and fitted state; networks on the CPU in eval
        mode. ``fit`` works on it again (with ``warm_start=True`` it continues
        training).

    Raises
    ------
    ValueError
        If the file is not a valid skssl save (including any file holding
        Python objects other than plain data and tensors), names an unknown
        class, does not match the estimator's networks, or needs ``backbone``.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl import RotationSSL, load, load_digits_images
    >>> X, _ = load_digits_images(return_X_y=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "rotation.skssl")
    >>> RotationSSL(max_epochs=1, random_state=0).fit(X[:100]).save(path)
    >>> load(path).transform(X[:5]).shape
    (5, 128)
    """
    import pickle

    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise _invalid(path, f"it could not be read as plain data and tensors ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}). Files holding other "
                             f"Python objects are refused because loading them could run code.") from exc

    return _from_payload(payload, backbone, path)


def _from_payload(payload, backbone, path):
    """The estimator a :func:`_payload` record describes (``path`` names it in errors)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _invalid(path, "it has no 'format': 'skssl' marker.")
    if payload.get("version") != VERSION:
        raise _invalid(path, f"format version {payload.get('version')!r} is not supported (this skssl reads version {VERSION}).")
    missing = sorted({"class", "params", "fitted", "state_dict"} - set(payload))
    if missing:
        raise _invalid(path, f"missing key(s) {missing}.")
    if not all(isinstance(payload[k], dict) for k in ("params", "fitted", "state_dict")):
        raise _invalid(path, "'params', 'fitted' and 'state_dict' must be dicts.")

    cls = _resolve_class(payload["class"])
    try:
        params = {k: _decode(v, f"parameter {k}") for k, v in payload["params"].items()}
        fitted = {k: _decode(v, f"fitted attribute {k}") for k, v in payload["fitted"].items()}
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError) as exc:
        raise _invalid(path, str(exc)) from exc

    _upgrade_from_0_1(cls.__name__, params, fitted, payload.get("skssl_version"))
    valid = set(cls._get_param_names())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise _invalid(path, f"{cls.__name__} has no parameter(s) {unknown}.")

    stored_backbone = params.get("backbone")
    if isinstance(stored_backbone, dict) and "__module__" in stored_backbone:
        if not isinstance(backbone, nn.Module):
            raise ValueError(
                f"{os.fspath(path)!r} was saved with a custom nn.Module backbone "
                f"({stored_backbone['__module__']}), which cannot be stored as plain data: pass "
                f"load(path, backbone=<an nn.Module of the same architecture>)."
            )
        module = copy.deepcopy(backbone)
        try:
            missing, unexpected = module.load_state_dict(payload.get("backbone_state_dict", {}), strict=False)
            # parameters of a lazy layer that was saved before its first call are absent from the file
            state = module.state_dict()
            missing = [k for k in missing if not nn.parameter.is_lazy(state[k])]
            if missing or unexpected:
                raise ValueError(f"missing keys {missing}, unexpected keys {unexpected}")
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"backbone= does not match the architecture of the saved backbone: {exc}") from exc
        params["backbone"] = module
    elif backbone is not None:
        raise ValueError(f"backbone= is only for files saved with a custom nn.Module backbone; "
                         f"this one uses backbone={stored_backbone!r}.")

    estimator = cls(**params)
    try:
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise _invalid(path, f"invalid parameters: {exc}") from exc

    for name, value in fitted.items():
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("__") or name in valid:
            raise _invalid(path, f"{name!r} is not a fitted attribute name.")
        if name in dir(cls) and not isinstance(inspect.getattr_static(cls, name), (int, float, str, tuple, type(None))):
            raise _invalid(path, f"fitted attribute {name!r} would hide a method or property of {cls.__name__}.")
        setattr(estimator, name, value)

    if (payload["state_dict"] or fitted) and hasattr(estimator, "_build_networks"):
        try:
            # Fresh weights are overwritten at once; building them must not
            # advance the caller's global RNG.
            with torch.random.fork_rng(devices=[]):
                estimator._build_networks()
            estimator.networks_.load_state_dict(payload["state_dict"], strict=True)
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise _invalid(path, f"its networks do not match {cls.__name__}: {exc}") from exc
        estimator.networks_.eval()
    return estimator
