"""Write the small intersphinx inventories that the docs build reads offline.

Why: the documentation is built where the network is unreachable (apart from
PyPI), so ``sphinx.ext.intersphinx`` cannot download ``objects.inv`` from
docs.python.org, pytorch.org, numpy.org or docs.scipy.org at build time. Each
entry of ``intersphinx_mapping`` in ``docs/conf.py`` therefore names the real
site as the link target and a local file written by this script as the
inventory::

    "torch": ("https://pytorch.org/docs/stable", "_inventories/torch.inv"),

so the rendered links still point at the real pages. Each file lists the
external objects these docs reference (from the docstrings, the type hints that
``sphinx-autodoc-typehints`` renders, and the pages), plus a few builtins that
docstrings commonly name (``list``, ``set``, ``pathlib.Path``, ...). The format
is the zlib-compressed Sphinx inventory format, version 2: four header lines,
then one ``name domain:role priority uri dispname`` line per object.

Regenerate (from the repository root; needs only the standard library)::

    python docs/_inventories/make_inventories.py

Extend: when the nitpicky build (``sphinx-build -W -n ...``) reports
``py:class reference target not found: torch.Something``, add the object to
its project's list below (``PYTHON``, ``TORCH``, ``NUMPY`` or ``SCIPY``) with
the role it has in that project's own docs (class,
function, method, data, exception, module, attribute) and the URL of its real
page, relative to the project's base URL in ``conf.py``, then rerun this
script and commit the ``.inv`` files. Check the URL in a browser: a wrong
anchor is a silent broken link. ``--check`` reads the files back with
Sphinx's own parser (needs Sphinx) and prints every resolved URL.

Names that type hints produce from an object's defining module (for example
``torch._C.Generator`` for ``torch.Generator``, or
``torch.nn.modules.module.Module`` for ``torch.nn.Module``) are listed as
aliases of the public name, with the public name as display text.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# project: (display name, version, base URL as in conf.py, entries)
# entry: (name, role, path relative to the base URL, display name or "-")
Entry = tuple[str, str, str, str]

_PY_EXC = "library/exceptions.html#"
_PY_FUNCS = "library/functions.html#"
_PY_TYPES = "library/stdtypes.html#"
_PY_CONST = "library/constants.html#"
_PY_ABC = "library/collections.abc.html#collections.abc."
_PY_TYPING = "library/typing.html#typing."

PYTHON: list[Entry] = [
    ("ValueError", "exception", _PY_EXC + "ValueError", "-"),
    ("TypeError", "exception", _PY_EXC + "TypeError", "-"),
    ("RuntimeError", "exception", _PY_EXC + "RuntimeError", "-"),
    ("int", "class", _PY_FUNCS + "int", "-"),
    ("float", "class", _PY_FUNCS + "float", "-"),
    ("bool", "class", _PY_FUNCS + "bool", "-"),
    ("object", "class", _PY_FUNCS + "object", "-"),
    ("range", "class", _PY_TYPES + "range", "-"),
    ("str", "class", _PY_TYPES + "str", "-"),
    ("dict", "class", _PY_TYPES + "dict", "-"),
    ("list", "class", _PY_TYPES + "list", "-"),
    ("tuple", "class", _PY_TYPES + "tuple", "-"),
    ("set", "class", _PY_TYPES + "set", "-"),
    ("None", "data", _PY_CONST + "None", "-"),
    ("Ellipsis", "data", _PY_CONST + "Ellipsis", "-"),
    ("os.PathLike", "class", "library/os.html#os.PathLike", "-"),
    ("pathlib.Path", "class", "library/pathlib.html#pathlib.Path", "-"),
    ("collections.defaultdict", "class", "library/collections.html#collections.defaultdict", "-"),
    ("collections.abc.Callable", "class", _PY_ABC + "Callable", "-"),
    ("collections.abc.Iterable", "class", _PY_ABC + "Iterable", "-"),
    ("collections.abc.Mapping", "class", _PY_ABC + "Mapping", "-"),
    ("collections.abc.Sequence", "class", _PY_ABC + "Sequence", "-"),
    ("typing.Any", "data", _PY_TYPING + "Any", "-"),
    ("typing.Literal", "data", _PY_TYPING + "Literal", "-"),
    ("bisect.bisect_right", "function", "library/bisect.html#bisect.bisect_right", "-"),
    ("random", "module", "library/random.html#module-random", "-"),
    ("pickle", "module", "library/pickle.html#module-pickle", "-"),
]

_TORCH_GEN = "generated/"
TORCH: list[Entry] = [
    ("torch.Tensor", "class", "tensors.html#torch.Tensor", "-"),
    ("torch.Size", "class", "size.html#torch.Size", "-"),
    ("torch.dtype", "class", "tensor_attributes.html#torch.dtype", "-"),
    ("torch.device", "class", "tensor_attributes.html#torch.device", "-"),
    ("torch.Generator", "class", _TORCH_GEN + "torch.Generator.html#torch.Generator", "-"),
    (
        "torch._C.Generator",
        "class",
        _TORCH_GEN + "torch.Generator.html#torch.Generator",
        "torch.Generator",
    ),
    ("torch.manual_seed", "function", _TORCH_GEN + "torch.manual_seed.html#torch.manual_seed", "-"),
    ("torch.randint", "function", _TORCH_GEN + "torch.randint.html#torch.randint", "-"),
    ("torch.randperm", "function", _TORCH_GEN + "torch.randperm.html#torch.randperm", "-"),
    (
        "torch.searchsorted",
        "function",
        _TORCH_GEN + "torch.searchsorted.html#torch.searchsorted",
        "-",
    ),
    ("torch.no_grad", "class", _TORCH_GEN + "torch.no_grad.html#torch.no_grad", "-"),
    ("torch.nn.Module", "class", _TORCH_GEN + "torch.nn.Module.html#torch.nn.Module", "-"),
    (
        "torch.nn.modules.module.Module",
        "class",
        _TORCH_GEN + "torch.nn.Module.html#torch.nn.Module",
        "torch.nn.Module",
    ),
    (
        "torch.nn.functional.embedding",
        "function",
        _TORCH_GEN + "torch.nn.functional.embedding.html#torch.nn.functional.embedding",
        "-",
    ),
    (
        "torch.nn.functional.softplus",
        "function",
        _TORCH_GEN + "torch.nn.functional.softplus.html#torch.nn.functional.softplus",
        "-",
    ),
    ("torch.optim.Adam", "class", _TORCH_GEN + "torch.optim.Adam.html#torch.optim.Adam", "-"),
    ("torch.optim.Optimizer", "class", "optim.html#torch.optim.Optimizer", "-"),
    (
        "torch.optim.optimizer.Optimizer",
        "class",
        "optim.html#torch.optim.Optimizer",
        "torch.optim.Optimizer",
    ),
    ("torch.utils.data.DataLoader", "class", "data.html#torch.utils.data.DataLoader", "-"),
    ("torch.utils.data.TensorDataset", "class", "data.html#torch.utils.data.TensorDataset", "-"),
    ("torch.distributed", "module", "distributed.html#module-torch.distributed", "-"),
    (
        "torch.nn.parallel.DistributedDataParallel",
        "class",
        _TORCH_GEN
        + "torch.nn.parallel.DistributedDataParallel.html"
        + "#torch.nn.parallel.DistributedDataParallel",
        "-",
    ),
]

_NP_GEN = "reference/generated/"
NUMPY: list[Entry] = [
    ("numpy.ndarray", "class", _NP_GEN + "numpy.ndarray.html#numpy.ndarray", "-"),
    ("numpy.dtype", "class", _NP_GEN + "numpy.dtype.html#numpy.dtype", "-"),
    ("numpy.int64", "class", "reference/arrays.scalars.html#numpy.int64", "-"),
]

_SP_GEN = "reference/generated/"
SCIPY: list[Entry] = [
    ("scipy.sparse", "module", "reference/sparse.html#module-scipy.sparse", "-"),
    ("scipy.sparse.sparray", "class", _SP_GEN + "scipy.sparse.sparray.html#scipy.sparse.sparray", "-"),
    (
        "scipy.sparse._base.sparray",
        "class",
        _SP_GEN + "scipy.sparse.sparray.html#scipy.sparse.sparray",
        "scipy.sparse.sparray",
    ),
    (
        "scipy.sparse.spmatrix",
        "class",
        _SP_GEN + "scipy.sparse.spmatrix.html#scipy.sparse.spmatrix",
        "-",
    ),
    (
        "scipy.sparse._matrix.spmatrix",
        "class",
        _SP_GEN + "scipy.sparse.spmatrix.html#scipy.sparse.spmatrix",
        "scipy.sparse.spmatrix",
    ),
    (
        "scipy.stats.chisquare",
        "function",
        _SP_GEN + "scipy.stats.chisquare.html#scipy.stats.chisquare",
        "-",
    ),
]

INVENTORIES: dict[str, tuple[str, str, str, list[Entry]]] = {
    "python": ("Python", "3", "https://docs.python.org/3", PYTHON),
    "torch": ("PyTorch", "stable", "https://pytorch.org/docs/stable", TORCH),
    "numpy": ("NumPy", "stable", "https://numpy.org/doc/stable", NUMPY),
    "scipy": ("SciPy", "stable", "https://docs.scipy.org/doc/scipy", SCIPY),
}


def inventory_bytes(project: str, version: str, entries: list[Entry]) -> bytes:
    """One inventory file in the Sphinx v2 format (header, then zlib-compressed lines)."""
    names = [(name, role) for name, role, _, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{project}: an object is listed twice")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(
        f"{name} py:{role} 1 {uri} {display}\n"
        for name, role, uri, display in sorted(entries, key=lambda e: (e[0], e[1]))
    )
    # level 9 and no timestamps: the same entries always give the same bytes.
    return header.encode() + zlib.compress(body.encode(), 9)


def write_all(directory: Path) -> list[Path]:
    """Write every ``<key>.inv`` into ``directory``; return the paths."""
    written = []
    for key, (project, version, _, entries) in INVENTORIES.items():
        path = directory / f"{key}.inv"
        path.write_bytes(inventory_bytes(project, version, entries))
        written.append(path)
    return written


def check(directory: Path) -> None:
    """Read the files back with Sphinx's parser and print each object's full URL."""
    from sphinx.util.inventory import InventoryFile

    for key, (_, _, base, entries) in INVENTORIES.items():
        inventory = InventoryFile.loads((directory / f"{key}.inv").read_bytes(), uri=base)
        count = 0
        for objtype, objects in inventory.data.items():
            for name, item in objects.items():
                print(f"{objtype:14} {name:45} {item.uri}")
                count += 1
        if count != len(entries):
            raise SystemExit(f"{key}.inv: read back {count} objects, wrote {len(entries)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="read the files back with Sphinx")
    args = parser.parse_args(argv)
    for path in write_all(HERE):
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    if args.check:
        check(HERE)


if __name__ == "__main__":
    main(sys.argv[1:])
