"""Sphinx configuration for the negsample documentation.

Build (from the repository root)::

    sphinx-build -W -n -b html docs docs/_build/html
    sphinx-build -W -n -b doctest docs docs/_build/doctest

Neither the build nor the built pages touch the network: intersphinx reads the
inventories in ``docs/_inventories/`` (see ``make_inventories.py`` there), and
the pages load MathJax from ``_static/mathjax/``, copied from the
``sphinx-mathjax-offline`` package of the ``docs`` extra, not from a CDN.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util.fileutil import copy_asset
from sphinx.util.inspect import TypeAliasForwardRef

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
# Parameter types name the alias, linked to its entry on the API page, instead of
# spelling out the union it stands for (sphinx-autodoc-typehints alone prints the name
# as plain text).
autodoc_type_aliases = {"IdsLike": "negsample.typing.IdsLike"}


def _format_type_alias(annotation: object, config: object) -> str | None:
    if isinstance(annotation, TypeAliasForwardRef):
        return f":py:data:`~{annotation.name}`"
    return None


typehints_formatter = _format_type_alias
# A function in the configuration cannot be pickled with the environment; Sphinx says
# so on every build. Changing it then needs a fresh build (-E), nothing else.
suppress_warnings = ["config.cache"]
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

# -- maths: MathJax 3 served with the pages, so that they read offline -----------
# ``sphinx-mathjax-offline`` ships MathJax 3.2.2. Its own Sphinx extension would copy all of
# it (24 MB, every output format); only the TeX-to-HTML component, its fonts, the TeX
# extensions it loads on demand and the menu's accessibility tools are copied here.
_MATHJAX_SPEC = importlib.util.find_spec("sphinx-mathjax-offline")
if _MATHJAX_SPEC is None or _MATHJAX_SPEC.origin is None:
    raise ImportError('MathJax for the docs comes from the "docs" extra: pip install -e ".[docs]"')
_MATHJAX_DIR = Path(_MATHJAX_SPEC.origin).parent / "static" / "mathjax"
_MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre")
mathjax_path = "mathjax/tex-chtml.js"


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    destination = Path(app.outdir) / "_static" / "mathjax"
    for part in _MATHJAX_PARTS:
        source = _MATHJAX_DIR / part
        copy_asset(source, destination / part if source.is_dir() else destination, force=True)


def setup(app: Sphinx) -> None:
    app.connect("build-finished", _copy_mathjax)


# -- HTML ------------------------------------------------------------------------
# ``::`` blocks in the docstrings hold formulas, not Python; code is marked as such.
highlight_language = "text"
html_theme = "furo"
html_title = f"negsample {release}"
