"""Ready analyses, one module per workflow, each a coffea ``ProcessorABC`` thin over the library.

Run by name with ``coffea-ad run NAME``; :data:`PROCESSORS` maps names to classes lazily.
"""

from __future__ import annotations

import importlib

from coffea_ad.errors import UnknownNameError

__all__ = ["PROCESSORS", "get_processor"]

#: processor name -> "module:Class" inside this package
PROCESSORS: dict[str, str] = {
    "svj": "svj:SVJProcessor",
    "bumphunt": "bumphunt:BumpHuntProcessor",
    "resonant": "resonant:ResonantProcessor",
    "vbs": "vbs:VBSProcessor",
}


def get_processor(name: str) -> type:
    """The processor class registered as ``name`` (UnknownNameError lists the valid names)."""
    if name not in PROCESSORS:
        raise UnknownNameError("processor", name, PROCESSORS)
    module, cls = PROCESSORS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
