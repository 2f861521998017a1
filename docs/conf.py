"""Sphinx configuration for the negsample documentation.

Build (from the repository root)::

    sphinx-build -W -n -b html docs docs/_build/html
    sphinx-build -W -n -b doctest docs docs/_build/doctest

The build never touches the network: intersphinx reads the inventories in
``docs/_inventories/`` (see ``make_inventories.py`` there).
"""

from __future__ import annotations

import warnings

import negsample

# sphinx-autodoc-typehints 3.6 calls an API that Sphinx 9 deprecates. The Python
# warning it prints for every docstring is noise, not a Sphinx warning.
warnings.filterwarnings(
    "ignore", message=r".*set_application.* is deprecated", module="sphinx_autodoc_typehints"
)

project = "negsample"
author = "negsample developers"
copyright = "2026, negsample developers"
release = negsample.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]

exclude_patterns = ["_build", "README.md", "_inventories"]

# -- nitpicky: every cross-reference must resolve --------------------------------
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = []
# -- autodoc / napoleon / typehints ----------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options: dict[str, object] = {}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
typehints_use_signature = False
typehints_document_rtype = True
# An ``:rtype: None`` line says nothing, and sphinx-autodoc-typehints 3.6 puts it after
# the "Example" rubric of a function without a "Returns" section, breaking the reST.
typehints_document_rtype_none = False
always_use_bars_union = True

# -- intersphinx: offline, from inventories stored in the repository ------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python.inv"),
    "torch": ("https://pytorch.org/docs/stable", "_inventories/torch.inv"),
    "numpy": ("https://numpy.org/doc/stable", "_inventories/numpy.inv"),
    "scipy": ("https://docs.scipy.org/doc/scipy", "_inventories/scipy.inv"),
}
intersphinx_timeout = 5

# -- doctest ---------------------------------------------------------------------
doctest_global_setup = """
import torch
torch.set_num_threads(1)
"""
doctest_test_doctest_blocks = ""  # run only the pages' doctest/testcode blocks

# -- HTML ------------------------------------------------------------------------
# ``::`` blocks in the docstrings hold formulas, not Python; code is marked as such.
highlight_language = "text"
html_theme = "furo"
html_title = f"negsample {release}"
