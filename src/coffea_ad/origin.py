"""Where a dataset's events come from, by its fileset metadata.

:func:`coffea_ad.samples.generate_fileset` writes ``generator: "coffea-ad"`` into each
dataset's metadata (older filesets are recognised by the ``process``/``settings``/``seed``
keys it has always written); anything else is a CMS file, data when its metadata says
``is_data`` (or ``isData``), simulation otherwise. Plots choose their label from this
(:mod:`coffea_ad.plotting.labels`), and reading chooses its schema (:mod:`coffea_ad.schemas`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["Origin", "dataset_origin", "is_generated_fileset"]

Origin = Literal["generated", "cms_simulation", "cms_data"]


def dataset_origin(metadata: Mapping[str, Any] | None) -> Origin:
    """Where one dataset's events come from, by its fileset metadata (see the module doc)."""
    meta = metadata or {}
    if meta.get("generator") == "coffea-ad" or {"process", "settings", "seed"} <= set(meta):
        return "generated"
    if meta.get("is_data") or meta.get("isData"):
        return "cms_data"
    return "cms_simulation"


def is_generated_fileset(fileset: Mapping[str, Any] | None) -> bool:
    """Whether ``fileset`` has datasets and every one was made by ``coffea-ad generate``."""
    entries = list((fileset or {}).values())
    return bool(entries) and all(
        dataset_origin(e.get("metadata") if isinstance(e, Mapping) else None) == "generated"
        for e in entries)
