"""The one reader of filesets (coffea's dataset format), used by running and by training.

Accepted, as a dict or the path of its JSON::

    {dataset: {"files": {path: treename | {"object_path": treename} | None} | [paths],
               "metadata": {...}, "treename": default tree of this dataset (optional)}}
    {dataset: [paths]}

Returned, always: ``{dataset: {"files": {path: treename}, "metadata": {...}}}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coffea_ad.errors import FilesetError

__all__ = ["RESERVED_METADATA", "load_fileset", "runner_metadata"]

# Keys coffea reserves in a dataset's metadata (it raises on them); we keep ours elsewhere.
RESERVED_METADATA = frozenset({"dataset", "filename", "treename", "metadata", "entrystart",
                               "entrystop", "fileuuid", "numentries", "uuid", "clusters",
                               "preload"})


def _tree(value: Any, default: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        return str(value.get("object_path") or default)
    return default


def load_fileset(fileset: Mapping[str, Any] | str | os.PathLike[str], *,
                 treename: str = "Events") -> dict[str, dict[str, Any]]:
    """Read a fileset into ``{dataset: {"files": {path: treename}, "metadata": {...}}}``.

    Args:
        fileset: the fileset (see the module docstring) or the path of its JSON.
        treename: tree of files whose entry names none.

    Raises:
        FileNotFoundError: the JSON path does not exist.
        FilesetError: (a ``ValueError``) not valid JSON, or a dataset entry of another shape.
    """
    if isinstance(fileset, (str, os.PathLike)):
        path = Path(fileset)
        if not path.is_file():
            raise FileNotFoundError(f"fileset JSON {path} does not exist")
        try:
            fileset = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise FilesetError(f"fileset JSON {path}: expected valid JSON, {err}") from None
    if not isinstance(fileset, Mapping):
        raise FilesetError("fileset: expected a mapping {dataset: {'files': ...}}, found "
                           f"{type(fileset).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in fileset.items():
        if isinstance(entry, Mapping) and "files" in entry:
            files, meta = entry["files"], entry.get("metadata") or {}
            tree = _tree(entry.get("treename"), treename)
        elif isinstance(entry, (list, tuple)):
            files, meta, tree = entry, {}, treename
        else:
            found = f"keys {sorted(entry)}" if isinstance(entry, Mapping) else type(entry).__name__
            raise FilesetError(f"fileset dataset {name!r}: expected a mapping with 'files' "
                               f"(coffea dataset format) or a list of files, found {found}")
        if isinstance(files, Mapping):
            norm = {str(p): _tree(t, tree) for p, t in files.items()}
        elif isinstance(files, (list, tuple)):
            norm = {str(p): tree for p in files}
        else:
            raise FilesetError(f"fileset dataset {name!r}: expected 'files' to be a mapping "
                               f"{{path: treename}} or a list, found {type(files).__name__}")
        out[str(name)] = {"files": norm, "metadata": dict(meta)}
    return out


def runner_metadata(fileset: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A loaded fileset with the metadata keys coffea reserves dropped (it raises on them)."""
    return {name: {"files": dict(entry["files"]),
                   "metadata": {k: v for k, v in entry["metadata"].items()
                                if k not in RESERVED_METADATA}}
            for name, entry in fileset.items()}
