"""All optional imports in one place, each failing with the pip command that fixes it."""

from __future__ import annotations

import importlib
from types import ModuleType

from coffea_ad.errors import MissingDependencyError

__all__ = ["require"]

# module name -> extra of coffea-ad that provides it
_EXTRA = {
    "torch": "train",
    "sklearn": "train",
    "pyarrow": "train",
    "pythia8mc": "generate",
    "fastjet": "generate",
    "onnxruntime": "cpu",
    "dask": "dask",
    "distributed": "dask",
    "dask_awkward": "dask",
    "matplotlib": "plot",
    "mplhep": "plot",
    "iminuit": "stats",
    "dask_jobqueue": "jobqueue",
    "dask_gateway": "gateway",
    "fsspec_xrootd": "xrootd",
}


def require(module: str, *, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise ``ModuleNotFoundError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        extra = _EXTRA.get(module.split(".")[0], "all")
        why = f" (needed for {purpose})" if purpose else ""
        msg = (
            f"{module} is not installed{why}; install it with: "
            f"pip install 'coffea-ad[{extra}]'"
        )
        if extra == "cpu":
            msg += "  (or 'coffea-ad[gpu]' for onnxruntime-gpu; never both)"
        raise MissingDependencyError(msg, name=module) from err
