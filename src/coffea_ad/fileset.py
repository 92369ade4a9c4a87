"""Reading and checking a fileset JSON (coffea dataset format) before any work is done.

``{dataset: {"files": {path: treename} | [path, ...], "metadata": {...}}}`` (a bare list of
files per dataset is accepted too, as coffea does). A malformed fileset is refused with one
message naming the file and what was expected; the same file listed under several spellings
(relative, absolute, through a symlink) is kept once, so it can never be counted twice.

:func:`load_fileset` is the one normaliser every consumer uses (running, training): it
returns ``{dataset: {"files": {path: treename}, "metadata": {...}}}`` whatever the spelling
of the input (a file's tree as a string, as coffea's ``{"object_path": ...}``, or missing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from coffea_ad.errors import FilesetError, MissingFileError

__all__ = [
    "EXPECTED",
    "RESERVED_METADATA",
    "check_fileset",
    "check_normalisation",
    "dedupe_files",
    "load_fileset",
    "read_fileset",
    "runner_metadata",
]

# Keys coffea reserves in a dataset's metadata (it raises on them); we keep ours elsewhere.
RESERVED_METADATA = frozenset({"dataset", "filename", "treename", "metadata", "entrystart",
                               "entrystop", "fileuuid", "numentries", "uuid", "clusters",
                               "preload"})

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
        raise MissingFileError(f"fileset JSON {path} does not exist")
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
        items = (list(files.items()) if isinstance(files, Mapping)
                 else [(f, None) for f in cast("Iterable[str]", files)])
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


def _tree(value: Any, default: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        return str(value.get("object_path") or default)
    return default


def load_fileset(fileset: Mapping[str, Any] | str | os.PathLike[str], *,
                 treename: str = "Events") -> dict[str, dict[str, Any]]:
    """Read (:func:`read_fileset`) or check (:func:`check_fileset`) a fileset and normalise it
    to ``{dataset: {"files": {path: treename}, "metadata": {...}}}``.

    Args:
        fileset: the fileset or the path of its JSON.
        treename: tree of files whose entry names none (a dataset's own ``"treename"`` key
            wins over it).

    Raises:
        FileNotFoundError: the JSON path does not exist.
        FilesetError: (a ``ValueError``) not JSON, or an entry of another shape.
    """
    if isinstance(fileset, (str, os.PathLike)):
        data = read_fileset(fileset)
    else:
        data = check_fileset(fileset)
    out: dict[str, dict[str, Any]] = {}
    for name, entry in data.items():
        if isinstance(entry, Mapping):
            files, meta = entry["files"], entry.get("metadata") or {}
            tree = _tree(entry.get("treename"), treename)
        else:
            files, meta, tree = entry, {}, treename
        norm = ({str(p): _tree(t, tree) for p, t in files.items()} if isinstance(files, Mapping)
                else {str(p): tree for p in files})
        out[str(name)] = {"files": norm, "metadata": dict(meta)}
    return out


def runner_metadata(fileset: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A loaded fileset with the metadata keys coffea reserves dropped (it raises on them)."""
    return {name: {"files": dict(entry["files"]),
                   "metadata": {k: v for k, v in entry["metadata"].items()
                                if k not in RESERVED_METADATA}}
            for name, entry in fileset.items()}


def check_normalisation(fileset: Mapping[str, Any], *, lumi_fb: float | None) -> None:
    """Refuse, before any file is opened, a ``lumi_fb`` run over datasets whose metadata
    lacks ``xsec`` (pb) or ``sumw`` (the sum of generator weights the yields divide by).

    Raises:
        FilesetError: one line naming every such dataset and the keys it lacks.
    """
    if lumi_fb is None:
        return
    problems = []
    for name, entry in fileset.items():
        meta = (entry.get("metadata") or {}) if isinstance(entry, Mapping) else {}
        missing = [k for k in ("xsec", "sumw") if k not in meta]
        if missing:
            problems.append(f"{name!r} lacks {', '.join(missing)}")
    if problems:
        raise FilesetError(
            f"lumi_fb={lumi_fb:g} scales each dataset by xsec * 1000 * lumi_fb / sumw, but "
            f"dataset {'; '.join(problems)}: add metadata xsec (pb) and sumw (sum of "
            "genWeight over all generated events) to the fileset, or run without lumi_fb")
