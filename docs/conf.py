"""Sphinx configuration of skssl's documentation: ``make docs`` builds it into docs/_build/html."""

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(HERE, "_ext"))

import skssl  # noqa: E402

project = "skssl"
author = "skssl developers"
copyright = "skssl developers"
version = release = skssl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "skssl_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.json", "auto_examples/*.md5", "auto_examples/*.pickle", "images/README.md"]
templates_path = []

# ----------------------------------------------------------------- API reference
autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = True
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# ------------------------------------------------------------------------ MyST
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "dollarmath"]
# benchmarks.md is written by benchmarks/report.py with ### tables under its # title.
suppress_warnings = ["myst.header"]

# ------------------------------------------------------------------ intersphinx
# Inventories are read only from local files (no network at build time): a
# folder docs/_inventories/ holding sklearn.inv, torch.inv or numpy.inv adds
# links to those projects; without them, no cross-project links and no warning.
_INVENTORIES = {"sklearn": "https://scikit-learn.org/stable/", "torch": "https://docs.pytorch.org/docs/stable/",
                "numpy": "https://numpy.org/doc/stable/"}
intersphinx_mapping = {
    name: (url, os.path.join(HERE, "_inventories", f"{name}.inv"))
    for name, url in _INVENTORIES.items()
    if os.path.exists(os.path.join(HERE, "_inventories", f"{name}.inv"))
}

# --------------------------------------------------------------------- gallery
# The examples run at small settings unless SKSSL_DOCS_FULL=1 (the settings
# each example uses when run by hand). Examples read SKSSL_EXAMPLE_SIZE.
if os.environ.get("SKSSL_DOCS_FULL") != "1":
    os.environ["SKSSL_EXAMPLE_SIZE"] = "small"
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": os.path.join(HERE, "auto_examples"),
    "filename_pattern": r".*\.py$",  # run every example, not only plot_*.py
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": (),
    "abort_on_example_error": True,
}

# Pretext figures of the method pages (one recorded training step per method).
skssl_method_figures = os.environ.get("SKSSL_DOCS_METHOD_FIGURES", "1") != "0"

# ----------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"skssl {release}"
html_theme_options = {
    "github_url": None,
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
