"""Ready analyses, one module per workflow, each a coffea ``ProcessorABC`` thin over the library.

The modules live in the top-level ``processors/`` folder of the repository; the wheel ships
them here (see :mod:`coffea_ad._checkout` for how a source checkout finds them).

Run by name with ``coffea-ad run NAME`` (or a user's own class with ``coffea-ad run
module:Class``); :data:`PROCESSORS` maps names to classes lazily:

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
from coffea_ad.errors import UnknownNameError, WrongTypeError

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
    """The processor class registered as ``name``, or a user's own as ``"module:Class"``
    (``module`` importable, e.g. ``my_analysis.processors:MyProcessor``).

    Raises:
        UnknownNameError: ``name`` is neither a registered name nor ``module:Class`` (the
            message lists the registered names).
        ImportError: ``module`` cannot be imported.
        TypeError: ``Class`` is not a coffea ``ProcessorABC`` subclass.
    """
    if name in PROCESSORS:
        local, cls = PROCESSORS[name].split(":")
        return getattr(importlib.import_module(f"{__name__}.{local}"), cls)
    if ":" not in name:
        raise UnknownNameError("processor", name, [*PROCESSORS, "module:Class"])
    module_name, _, cls_name = name.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, cls_name, None)
    if found is None:
        raise UnknownNameError(f"class in {module_name}", cls_name,
                               [n for n in dir(module) if not n.startswith("_")])
    from coffea.processor import ProcessorABC

    if not (isinstance(found, type) and issubclass(found, ProcessorABC)):
        msg = (f"processor {name!r}: expected a coffea ProcessorABC subclass, found "
               f"{type(found).__name__} {found!r}")
        raise WrongTypeError(msg)
    return found
