"""Input paths that may be remote: ``root://`` (XRootD) and ``http(s)://`` URLs.

uproot reads both through fsspec; ``root://`` needs ``fsspec-xrootd`` (the ``xrootd`` extra,
which also brings the XRootD client bindings), ``https://`` only ``aiohttp`` (installed with
coffea). Local paths are checked for existence up front, URLs are left to the reader (whose
error names the server's answer).
"""

from __future__ import annotations

import os
from pathlib import Path

from coffea_ad._optional import require
from coffea_ad.errors import MissingFileError

__all__ = ["input_location", "is_url"]

_SCHEMES = ("root://", "http://", "https://")


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``root://``, ``http://`` and ``https://`` locations."""
    return str(path).startswith(_SCHEMES)


def input_location(path: str | os.PathLike[str]) -> str | Path:
    """A reader input: the URL unchanged (``Path`` would fold its ``//``), else a local
    ``Path`` that must exist.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ModuleNotFoundError: a ``root://`` URL without fsspec-xrootd (names the extra).
    """
    text = str(path)
    if text.startswith("root://"):
        require("fsspec_xrootd", purpose=f"reading {text}")
        return text
    if is_url(text):
        return text
    local = Path(text)
    if not local.is_file():
        raise MissingFileError(f"input file {local} does not exist")
    return local
