"""Writing outputs so that nothing is lost: temporary file in the same folder, then rename.

Every writer of coffea-ad (friend trees, feature tables, run directories, generated samples and
their fileset, exported models) goes through these helpers, so that

* a reader never sees a half-written file: the content goes to a temporary name in the
  destination's folder (same filesystem, so :func:`os.replace` is atomic), is flushed to disk
  with ``fsync``, and only then takes the final name; a failure removes the temporary and
  leaves any earlier file untouched;
* an output is never one of the inputs (:func:`refuse_same_file` compares resolved paths and
  inode, so a symlink or ``./x`` spelling does not slip through);
* an existing output is kept unless the caller asks to overwrite (:func:`refuse_existing`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from coffea_ad.errors import InputOverwriteError, MissingFileError, OutputExistsError

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_path",
    "refuse_existing",
    "refuse_same_file",
    "same_file",
]


def _temp_name(path: Path, kind: str) -> Path:
    # keep the suffix: writers such as matplotlib pick the format from it
    return path.with_name(f".{path.stem}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file (resolved path, or same inode when both exist)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def refuse_same_file(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *,
                     option: str = "--output") -> None:
    """Raise :class:`InputOverwriteError` when ``output`` is one of ``inputs``."""
    for inp in inputs:
        if same_file(output, inp):
            raise InputOverwriteError(
                f"{option} {output} is the input file {inp}; expected a different path "
                "(an input is never overwritten)"
            )


def refuse_existing(path: str | os.PathLike[str], *, overwrite: bool,
                    option: str = "--overwrite") -> None:
    """Raise :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        kind = "folder" if path.is_dir() else "file"
        raise OutputExistsError(
            f"output {kind} {path} already exists; expected a new path, or pass {option} to "
            "replace it"
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is synced and renamed to ``path``.

    The block writes the temporary file (by any library: uproot, pyarrow, torch...). If the
    block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise MissingFileError(f"the writer of {path} produced no file at {tmp}")
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it becomes ``path`` as one set.

    Every file in the folder is synced before the rename. An existing ``path`` is refused
    unless ``overwrite``; with ``overwrite`` it is moved aside, replaced and then deleted, so
    a reader sees either the old set or the new one, never a mix. If the block raises, the
    temporary folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, "tmpdir")
    tmp.mkdir()
    try:
        yield tmp
        for child in tmp.rglob("*"):
            if child.is_file():
                fsync_path(child)
        fsync_path(tmp)
        if path.exists():
            refuse_existing(path, overwrite=overwrite)  # appeared while we worked
            old = _temp_name(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(path.parent)
