"""The documentation: numpydoc validation of every public docstring, the docstring examples, the site build."""

import doctest
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import skssl
from skssl._public import public_methods, public_objects

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# numpydoc checks every public docstring must pass: a docstring at all (GL08), a one-line summary ending
# in a period (SS01-SS06), every parameter documented, known, in signature order, typed with a space
# before the colon and described in sentences (PR01-PR03, PR05-PR10), a Returns section for what
# returns something (RT01), layout (GL01-GL03, GL05-GL07, GL09, GL10) and See Also descriptions (SA02-SA04).
# Left out: PR04 (several parameters share one typed line), RT02/RT03 (unnamed or undescribed return values
# that the type says all about), ES01, SA01 and EX01 (extended summaries, See Also and Examples are
# not required of every method; every class and function has Examples, checked below).
CHECKS = ("GL01", "GL02", "GL03", "GL05", "GL06", "GL07", "GL08", "GL09", "GL10",
          "SS01", "SS02", "SS03", "SS04", "SS05", "SS06",
          "PR01", "PR02", "PR03", "PR05", "PR06", "PR07", "PR08", "PR09", "PR10",
          "RT01", "RT04", "RT05", "YD01", "SA02", "SA03", "SA04")


def public_names():
    """Fully qualified names of every public class, its public methods, and every public function."""
    names = []
    for module, objects in public_objects().items():
        for name, obj in objects.items():
            names.append(f"{module}.{name}")
            if inspect.isclass(obj):
                names += [f"{module}.{name}.{method}" for method in public_methods(obj)]
    return names


def docstring_errors(names, checks=CHECKS):
    from numpydoc.validate import validate

    errors = []
    for name in names:
        for code, message in validate(name)["errors"]:
            if code in checks:
                errors.append(f"{name}: {code} {message}")
    return errors


def test_every_public_docstring_passes_numpydoc_validation():
    pytest.importorskip("numpydoc")
    errors = docstring_errors(public_names())
    assert not errors, f"{len(errors)} numpydoc error(s):\n" + "\n".join(errors)


def test_every_public_class_and_function_has_an_example():
    pytest.importorskip("numpydoc")
    names = [f"{module}.{name}" for module, objects in public_objects().items() for name in objects]
    missing = docstring_errors(names, checks=("EX01",))
    assert not missing, "no Examples section:\n" + "\n".join(missing)


class _Undocumented(skssl.RotationSSL):
    """A rotation method with one more parameter.

    Parameters
    ----------
    {common_parameters}

    Examples
    --------
    >>> _Undocumented().strength
    1.0
    """

    _params = {"strength": 1.0}


def test_validation_names_an_undocumented_parameter(monkeypatch):
    # The composed docstring documents every shared parameter, so the new one is the only PR01.
    pytest.importorskip("numpydoc")
    monkeypatch.setattr(sys.modules[__name__], "_Undocumented", _Undocumented, raising=False)
    errors = docstring_errors([f"{__name__}._Undocumented"])
    assert len(errors) == 1 and "PR01" in errors[0] and "strength" in errors[0], errors


def test_public_names_cover_every_estimator_and_all_of_skssl():
    listed = {obj for objects in public_objects().values() for obj in objects.values()}
    assert set(skssl.ESTIMATORS) <= listed
    assert {getattr(skssl, name) for name in skssl.__all__
            if inspect.isclass(getattr(skssl, name)) or inspect.isfunction(getattr(skssl, name))} <= listed


def _documented_defaults(cls):
    """``{name: value}`` of every Parameters entry whose ``default=`` is a Python literal."""
    import ast
    import re

    found = {}
    for name, text in re.findall(r"^    (\w+) : .*?default=(.+)$", cls.__doc__ or "", re.M):
        try:
            found[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            pass
    return found


@pytest.mark.parametrize("cls", skssl.ESTIMATORS, ids=lambda cls: cls.__name__)
def test_documented_defaults_are_the_estimators_defaults(cls):
    # Shared descriptions get each method's own default (a method's batch_size or weight_decay is not BaseSSL's).
    params = cls().get_params()
    wrong = {name: (value, params[name]) for name, value in _documented_defaults(cls).items()
             if name in params and not isinstance(params[name], type) and value != params[name]}
    assert not wrong, f"{cls.__name__}: documented default != actual: {wrong}"


def _modules_with_examples():
    found = []
    for info in pkgutil.walk_packages(skssl.__path__, "skssl."):
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module)):
            found.append(info.name)
    return found


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # examples that save files leave nothing behind
    module = importlib.import_module(module_name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # One BLAS thread, as the other tests' torch threads: the probes' small solves slow down many times
    # over when OpenBLAS threads spin on cores that other test workers use.
    with threadpool_limits(limits=1, user_api="blas"):
        for test in doctest.DocTestFinder().find(module, globs={"np": np, **vars(module)}):
            runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {module_name}"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """``make docs``'s build, with warnings as errors: every public name, example and method gets its page."""
    for package in ("sphinx", "numpydoc", "myst_parser", "sphinx_gallery", "pydata_sphinx_theme", "sphinx_copybutton"):
        pytest.importorskip(package)
    out = tmp_path / "html"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            "-d", str(tmp_path / "doctrees"), os.path.join(ROOT, "docs"), str(out)],
                           capture_output=True, text=True, env=env, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-6000:]
    missing = [name for module, objects in public_objects().items() for name in objects
               if not (out / "generated" / "api" / f"{module}.{name}.html").exists()]
    assert not missing, f"no API page for {missing}"
    for script in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        if script.endswith(".py"):
            stem = script[:-3]
            assert (out / "auto_examples" / f"{stem}.html").exists(), f"no gallery page for {script}"
            assert (out / "_images" / f"sphx_glr_{stem}_001.png").exists(), f"no figure from {script}"
    for cls in skssl.ESTIMATORS:
        family = cls.__module__.split(".")[1]
        page = out / "generated" / "methods" / family / f"{cls.__name__}.html"
        assert page.exists(), f"no method page for {cls.__name__}"
        assert f"{cls.__name__}.png" in page.read_text(), f"{cls.__name__}'s page has no pretext figure"
