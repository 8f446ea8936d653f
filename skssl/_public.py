"""skssl's public names, read from the ``__all__`` of its public modules.

The API reference (docs/conf.py) and the docstring validation test
(tests/test_docs.py) both list names from here, so a name added to one of
these ``__all__`` lists gets an API page and is validated without edits
elsewhere.
"""

import importlib
import inspect

# The modules whose ``__all__`` is public API, in the order the API reference shows them.
PUBLIC_MODULES = ("skssl", "skssl.datasets", "skssl.evaluation", "skssl.diagnostics", "skssl.plotting",
                  "skssl.augment", "skssl.baselines", "skssl.persistence", "skssl.semi")


def public_objects():
    """``{module: {name: object}}`` of every public class and function, each under the first module listing it.

    Constants (tuples, strings) are left out: they have no docstring of their own.
    """
    seen, out = set(), {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names = {}
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            names[name] = obj
        out[module_name] = names
    return out


def public_methods(cls):
    """Names of the public methods a class defines or inherits from skssl (not from sklearn or torch)."""
    names = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not callable(member) or isinstance(member, type):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is not None and owner.__module__.startswith("skssl"):
            names.append(name)
    return names
