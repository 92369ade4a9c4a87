"""Ready analyses, one module per workflow, each a coffea ``ProcessorABC`` thin over the library.

The modules live in the top-level ``processors/`` folder of the repository; the wheel ships
them here (see :mod:`coffea_ad._checkout` for how a source checkout finds them).

Run by name with ``coffea-ad run NAME``; :data:`PROCESSORS` maps names to classes lazily:

- ``svj``: semivisible jets, AE-tagged jets in 0/1/2-tag categories × m_T (ABCD in m_T);
- ``bumphunt``: model-agnostic dijet search, QR-decorrelated categories × m_jj;
- ``resonant``: LHC-Olympics-style cVAE, signal region vs sidebands, sampled template;
- ``vbs``: same-sign WW + 2 jets, event-level VAE / VAE+DNN scores for σ = |BSM − SM|/√SM.

Each refuses input without the branches it needs with
:class:`~coffea_ad.errors.MissingBranchError` naming them, and writes an empty but
well-formed output for an empty file. ``coffea-ad report OUT`` turns a run into a page.
"""

from __future__ import annotations

import importlib

from coffea_ad._checkout import extend_from_checkout
from coffea_ad.errors import UnknownNameError

extend_from_checkout(__path__, __file__, "processors")

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
