"""Sphinx configuration for the l2optim documentation.

Builds offline: MathJax is served from the site itself (copied from the
``sphinx-mathjax-offline`` package), and no extension reaches the network.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import l2optim

DOCS = Path(__file__).resolve().parent
# The gallery's ordering key lives beside this file.
sys.path.insert(0, str(DOCS))

project = "l2optim"
author = "the l2optim developers"
copyright = "the l2optim developers, BSD-3-Clause"
release = l2optim.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb"]

# -- MyST -----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc --------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# -- math, served locally ---------------------------------------------------------
_mathjax_package = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax_package is None or _mathjax_package.origin is None:
    raise RuntimeError("the docs need the sphinx-mathjax-offline package: pip install '.[docs]'")
# ``static/mathjax`` of that package lands in ``_static/mathjax`` of the site.
_mathjax_static = os.path.join(os.path.dirname(_mathjax_package.origin), "static")
html_static_path = ["_static", _mathjax_static]
mathjax_path = "mathjax/tex-chtml.js"

# -- HTML -----------------------------------------------------------------------
html_theme = "furo"
html_title = f"l2optim {release}"
html_css_files = ["l2optim.css"]

# -- gallery --------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Every script is executed, not only plot_*.py.
    "filename_pattern": r".*\.py$",
    "within_subsection_order": "gallery_order.IssueOrder",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_signature": False,
    "reset_modules": ("matplotlib",),
    "matplotlib_animations": False,
    # The timing pages load jQuery and DataTables from a CDN; the site stays offline.
    "write_computation_times": False,
}
