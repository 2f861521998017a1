"""The command's output files: checked before any training, written atomically.

Every output (``--submission``, ``--plot``) is checked once, before the data
is loaded: its folder exists and takes a new file, it is not a folder or a
device, not read-only, not an input file and not another output. It is then
written to a temporary file beside it and moved over it with ``os.replace``,
so a failed write (a full disk, a file-size limit, an interrupt) leaves the
old file as it was, and the error names the file.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class OutputError(Exception):
    """An output file that cannot be written: one line for the user."""


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links, hard links, ``..``)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _temporary_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _create(path: Path, mode: int = 0o666) -> int:
    # O_EXCL: never open a file that someone else made under this name; the umask applies.
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


def check_output(option: str, path: Path, inputs: Sequence[tuple[str, Path]]) -> None:
    """Raise :class:`OutputError` unless ``path`` can be (over)written, before any training.

    ``inputs`` are ``(option, file)`` pairs that ``path`` must not name: the
    data, the test file and the other outputs.
    """
    for other_option, other in inputs:
        if same_file(path, other):
            raise OutputError(
                f"{option} {path} is the file of {other_option} {other}: choose another name"
            )
    target = path.resolve()
    if not target.parent.is_dir():
        if target.parent.exists():
            raise OutputError(f"{option} {path}: {path.parent} is not a folder")
        raise OutputError(f"{option} {path}: the folder {path.parent} does not exist")
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise OutputError(f"{option} {path}: is a folder; name a file in it")
        if not stat.S_ISREG(mode):
            raise OutputError(f"{option} {path}: is not a regular file (a device or a pipe?)")
        if not os.access(target, os.W_OK):
            raise OutputError(f"{option} {path}: the file is read-only")
    # The write goes to a new file beside the target: try to make one now.
    probe = _temporary_path(target)
    try:
        os.close(_create(probe))
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise OutputError(f"{option} {path}: cannot write in {path.parent} ({reason})") from None
    probe.unlink()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``; moved over ``path`` when the block succeeds.

    On any error the temporary file is removed and ``path`` is left as it was;
    an :class:`OSError` is raised again with ``path`` as its file name, so the
    message names the file the user asked for.
    """
    target = path.resolve()  # through a symbolic link: replace the file, keep the link
    temporary = _temporary_path(target)
    try:
        os.close(_create(temporary))
        if target.exists():
            # Keep the permissions of the file that is replaced.
            os.chmod(temporary, stat.S_IMODE(target.stat().st_mode))
        yield temporary
        os.replace(temporary, target)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, then move the temporary file over ``path``."""
    with atomic_path(path) as temporary:
        write(temporary)


def plot_format(option: str, path: Path) -> str:
    """The matplotlib format of ``path`` (its extension, else PNG), tried once on a tiny figure.

    Raises:
        OutputError: If matplotlib is missing or cannot write that format here.
    """
    try:
        import matplotlib
    except ImportError:
        raise OutputError(f"{option} needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fmt = path.suffix[1:].lower() or "png"
    supported = Figure().canvas.get_supported_filetypes()
    if fmt not in supported:
        raise OutputError(
            f"{option} {path}: matplotlib cannot write {fmt!r} files (known formats: "
            f"{', '.join(sorted(supported))})"
        )
    try:
        Figure(figsize=(1, 1)).savefig(io.BytesIO(), format=fmt)
    except Exception as err:  # a missing writer (LaTeX for pgf, Pillow's AVIF, ...)
        reason = " ".join(str(err).split()) or type(err).__name__
        raise OutputError(
            f"{option} {path}: matplotlib cannot write {fmt!r} here ({reason})"
        ) from None
    return fmt
