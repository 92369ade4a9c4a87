"""Reading and checking a fileset JSON (coffea dataset format) before any work is done.

``{dataset: {"files": {path: treename} | [path, ...], "metadata": {...}}}`` (a bare list of
files per dataset is accepted too, as coffea does). A malformed fileset is refused with one
message naming the file and what was expected; the same file listed under several spellings
(relative, absolute, through a symlink) is kept once, so it can never be counted twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coffea_ad.errors import FilesetError

__all__ = ["EXPECTED", "dedupe_files", "read_fileset"]

EXPECTED = 'expected a JSON object {dataset: {"files": {path: tree} or [paths], "metadata": {...}}}'


def read_fileset(path: str | os.PathLike[str], *, missing_ok: bool = False) -> dict[str, Any]:
    """The fileset in ``path``, checked (``{}`` if it does not exist and ``missing_ok``).

    Raises:
        FilesetError: not JSON, not an object of datasets, or a dataset without files.
        FileNotFoundError: ``path`` does not exist (and not ``missing_ok``).
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"fileset JSON {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FilesetError(f"fileset {path} cannot be read ({err}); {EXPECTED}") from err
    return check_fileset(data, where=str(path))


def check_fileset(data: Any, *, where: str = "fileset") -> dict[str, Any]:
    """``data`` if it is a well-formed fileset, else :class:`FilesetError` naming the problem."""
    if not isinstance(data, Mapping):
        raise FilesetError(f"{where} holds a JSON {type(data).__name__}; {EXPECTED}")
    for name, entry in data.items():
        files = entry.get("files") if isinstance(entry, Mapping) else entry
        if not isinstance(files, (Mapping, list)):
            raise FilesetError(
                f"{where}: dataset {name!r} has no 'files' mapping or list (found "
                f"{type(files).__name__}); {EXPECTED}")
        if isinstance(entry, Mapping) and not isinstance(entry.get("metadata") or {}, Mapping):
            raise FilesetError(f"{where}: dataset {name!r} has a 'metadata' that is not an "
                               f"object; {EXPECTED}")
    return dict(data)


def _identity(path: str) -> str:
    if "://" in path and not path.startswith("file://"):
        return path  # remote: compared as written
    local = Path(path.removeprefix("file://"))
    try:
        st = local.stat()
        return f"inode:{st.st_dev}:{st.st_ino}"
    except OSError:
        return str(local.resolve())


def dedupe_files(fileset: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop repeated spellings of one file within a dataset.

    Returns:
        The fileset with each file once per dataset (first spelling kept), and one message per
        dropped spelling.
    """
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for name, entry in fileset.items():
        files = entry.get("files") if isinstance(entry, Mapping) else entry
        items = list(files.items()) if isinstance(files, Mapping) else [(f, None) for f in files]
        seen: dict[str, str] = {}
        kept = []
        for path, tree in items:
            key = _identity(str(path))
            if key in seen:
                dropped.append(f"dataset {name!r}: {path} is the same file as {seen[key]}; "
                               "processed once")
                continue
            seen[key] = str(path)
            kept.append((path, tree))
        new_files: Any = dict(kept) if isinstance(files, Mapping) else [p for p, _ in kept]
        out[name] = ({**entry, "files": new_files} if isinstance(entry, Mapping)
                     else new_files)
    return out, dropped
