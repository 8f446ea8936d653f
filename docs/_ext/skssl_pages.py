"""Pages generated from the code at build time: the API reference and one page per method.

Nothing here names a method. The API reference lists ``skssl._public``; the
method pages come from ``skssl.IMAGE_ESTIMATORS`` and ``skssl.VIDEO_ESTIMATORS``
(grouped into families by their sub-package, whose docstring introduces the
family), each with its docstring's description, the figure
:func:`skssl.plotting.plot_pretext` draws of its training step, its defaults
from ``get_params`` and its rows of ``benchmarks/results/*.json``. A new
estimator in those tuples gets its page on the next build.
"""

import glob
import importlib
import inspect
import json
import os
import re

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.dirname(HERE)
ROOT = os.path.dirname(DOCS)
OUT = os.path.join(DOCS, "generated")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
# Rows every method is read against, shown under its own row when the same result file has them.
BASELINES = ("raw pixels", "RandomInit")


def _write(path, text):
    """Write only when the text changed, so that Sphinx does not re-read unchanged pages."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------------------- API reference
def api_page():
    from skssl._public import public_objects

    lines = ["API reference", "=============", "",
             "Every public class and function, generated from the ``__all__`` of skssl's public modules",
             "(``skssl._public.PUBLIC_MODULES``). A name listed by several modules is documented under the first.", ""]
    for module, objects in public_objects().items():
        if not objects:
            continue
        title = f":mod:`{module}`"
        doc = inspect.getdoc(importlib.import_module(module)) or ""
        lines += [title, "-" * len(title), "", f".. automodule:: {module}", "   :no-members:", "   :no-index:", "",
                  doc.split("\n\n")[0] if module != "skssl" else "", "",
                  f".. currentmodule:: {module}", "", ".. autosummary::", "   :toctree: api", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in objects] + [""]
    _write(os.path.join(OUT, "api.rst"), "\n".join(lines))


# -------------------------------------------------------------------- method pages
def _families():
    import skssl

    families = {}
    for cls in skssl.IMAGE_ESTIMATORS + skssl.VIDEO_ESTIMATORS:
        package = ".".join(cls.__module__.split(".")[:2])
        families.setdefault(package, []).append(cls)
    return families


def _paragraphs(cls):
    """The summary and the description of a class docstring (everything before its first section)."""
    doc = inspect.getdoc(cls) or ""
    body = re.split(r"\n[A-Z][A-Za-z ]+\n-{3,}\n", "\n" + doc, maxsplit=1)[0].strip()
    summary, _, rest = body.partition("\n\n")
    return summary.replace("\n", " "), rest


def _value(value):
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _results():
    out = {}
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path) as f:
            result = json.load(f)
        rows = result.get("rows")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            out[os.path.basename(path)[:-5]] = result
    return out


def _benchmark_rows(name, results):
    lines = []
    for stem, result in results.items():
        mine = [r for r in result["rows"] if r.get("method") == name]
        if not mine:
            continue
        rows = mine + [r for r in result["rows"] if r.get("method") in BASELINES and r.get("method") != name]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        setting = result.get("budget") or result.get("setup") or ""
        lines += [f"**{stem}**" + (f" ({result['dataset']})" if "dataset" in result else "") + ":"
                  + (f" {setting}." if isinstance(setting, str) and setting else ""), "",
                  "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_value(r.get(k, "")) for k in keys) + " |" for r in rows]
        lines.append("")
    return lines


def _defaults(cls):
    from skssl.base import COMMON_PARAMS

    params = cls().get_params(deep=False)
    signature = list(inspect.signature(cls).parameters)
    own = [k for k in signature if k not in COMMON_PARAMS]
    shared = [k for k in signature if k in COMMON_PARAMS]
    lines = ["| parameter | default |", "|---|---|"]
    lines += [f"| `{k}` | `{params[k]!r}` |" for k in own]
    changed = [k for k in shared if params[k] != COMMON_PARAMS[k]]
    lines += [f"| `{k}` | `{params[k]!r}` (shared parameter; most methods: `{COMMON_PARAMS[k]!r}`) |" for k in changed]
    lines += ["", "The other shared parameters keep their defaults: "
              + ", ".join(f"`{k}={params[k]!r}`" for k in shared if k not in changed) + "."]
    return lines


def _figure(cls, path, data, cache):
    """Draw the method's pretext figure, reusing the last one drawn for the same defaults and skssl source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skssl.plotting import plot_pretext

    key = f"{cls.__module__}.{cls.__qualname__}:{cache}"
    stamp = path + ".key"
    if os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == key:
        return
    estimator = cls()
    # The figure shows one training step; epochs of anything trained before it (BEiT's tokenizer) are cut to one.
    estimator.set_params(**{k: 1 for k in estimator.get_params(deep=False) if k.endswith("_epochs")})
    fig = plot_pretext(estimator, data, random_state=0)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    with open(stamp, "w") as f:
        f.write(key)


def _source_key():
    """A fingerprint of skssl's source, so cached figures are redrawn when the code changes."""
    import hashlib

    import skssl

    digest = hashlib.sha1()
    root = os.path.dirname(skssl.__file__)
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def _colour_tiles(n=128, size=32):
    """Colour images for methods that need them: tiles of the two photographs scikit-learn ships."""
    from sklearn.datasets import load_sample_images

    tiles = []
    for photo in load_sample_images().images:
        h, w = photo.shape[:2]
        tiles += [photo[i:i + size, j:j + size] for i in range(0, h - size + 1, 2 * size)
                  for j in range(0, w - size + 1, 2 * size)]
    return np.stack(tiles[::max(1, len(tiles) // n)][:n])


def method_pages(figures=True):
    import skssl
    from skssl.datasets import load_digits_images, make_moving_images

    images, _ = load_digits_images(return_X_y=True)
    images = images[:128]
    colour = None
    clips = None
    results, cache = _results(), _source_key()
    families = _families()
    family_titles = {}
    for package, classes in families.items():
        module = importlib.import_module(package)
        doc = (inspect.getdoc(module) or package).strip()
        first, _, rest = doc.partition("\n\n")
        title, _, tagline = first.replace("\n", " ").partition(": ")
        title, intro = title.rstrip("."), (tagline[:1].upper() + tagline[1:] + "\n\n" + rest).strip()
        slug = package.split(".")[-1]
        family_titles[slug] = title
        lines = [f"# {title}", "", intro, "", f"Methods of `{package}`:", "", "```{toctree}", ":maxdepth: 1", ""]
        lines += [f"{cls.__name__}" for cls in classes] + ["```", ""]
        for cls in classes:
            lines.append(f"- [{cls.__name__}]({cls.__name__}.md): {_paragraphs(cls)[0]}")
        _write(os.path.join(OUT, "methods", slug, "index.md"), "\n".join(lines) + "\n")
        for cls in classes:
            name = cls.__name__
            summary, description = _paragraphs(cls)
            video = cls in skssl.VIDEO_ESTIMATORS
            page = [f"# {name}", "", f"*{summary}*", "", "```{eval-rst}", description, "```", "",
                    f"API reference: {{class}}`skssl.{name}`.", "", "## What the pretext asks of the network", ""]
            if figures:
                if video and clips is None:
                    clips = make_moving_images(16, 8, 16, random_state=0).clips
                png = os.path.join(OUT, "methods", slug, f"{name}.png")
                data, described = (clips, "16 generated moving-image clips") if video else (images, "128 digits")
                try:
                    _figure(cls, png, data, cache)
                except ValueError:
                    # A method that refuses the grayscale digits (colorization) is shown colour tiles.
                    if colour is None:
                        colour = _colour_tiles()
                    data, described = colour, "128 colour tiles of scikit-learn's sample photographs"
                    _figure(cls, png, data, cache)
                page += [f"![{name}: one training step]({name}.png)", "",
                         "One training step of `" + name + "()` on " + described
                         + ", recorded by {func}`skssl.plotting.plot_pretext`: "
                         "the batch (top row) and every batch of images the step sent to a network, as the "
                         "network received them (each image scaled to its own range).", ""]
            else:
                page += ["(Figures are not drawn in this build.)", ""]
            page += ["## Defaults", ""] + _defaults(cls) + [""]
            bench = _benchmark_rows(name, results)
            page += ["## Benchmarks", ""]
            page += (["Rows of `benchmarks/results/*.json` for this method (and the baselines measured with it); "
                      "how they were measured is on the [benchmarks page](../../../benchmarks.md).", ""] + bench
                     if bench else ["No benchmark result file has a row for this method yet.", ""])
            _write(os.path.join(OUT, "methods", slug, f"{name}.md"), "\n".join(page))
    lines = ["# Choosing a pretext", "",
             "Every self-supervised method of skssl, by family. Each page shows what the method's training "
             "step feeds its network (drawn by skssl's own plotting from one real step), its defaults and its "
             "benchmark rows; all of it is generated from the code and the result files when the site is built.",
             "", "```{toctree}", ":maxdepth: 2", ""]
    lines += [f"{slug}/index" for slug in family_titles] + ["```", ""]
    _write(os.path.join(OUT, "methods", "index.md"), "\n".join(lines))


def generate(app, config):
    api_page()
    method_pages(figures=config.skssl_method_figures)


def link_examples(app, relative_path, parent_docname, content):
    """README's links to example scripts point at their gallery pages when the README is included."""
    if str(relative_path).endswith("README.md"):
        content[0] = re.sub(r"\]\(examples/(\w+)\.py\)", r"](auto_examples/\1)", content[0])


def setup(app):
    app.add_config_value("skssl_method_figures", True, "env")
    # Before Sphinx lists the source files (and autosummary the pages it makes stubs for).
    app.connect("config-inited", generate)
    app.connect("include-read", link_examples)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
