"""Exceptions of coffea-ad.

Each subclasses the built-in exception that callers already catch (uproot/awkward style), and
each message says what was expected and what was found.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CoffeaADError",
    "FilesetError",
    "FolderBusyError",
    "InputOverwriteError",
    "InvalidOutputError",
    "MissingBranchError",
    "ModelContractError",
    "ModelFileError",
    "NonFiniteInputError",
    "NonFiniteScoreError",
    "OutputExistsError",
    "ReportInputError",
    "UnknownNameError",
    "nearest_first",
]


class CoffeaADError(Exception):
    """Base class of every coffea-ad error."""


def nearest_first(name: str, available: Iterable[str], limit: int = 12) -> list[str]:
    """Return ``available`` ordered by similarity to ``name`` (closest first), at most ``limit``."""
    available = list(dict.fromkeys(available))
    close = difflib.get_close_matches(name, available, n=limit, cutoff=0.0)
    rest = [a for a in sorted(available) if a not in close]
    return (close + rest)[:limit]


class MissingBranchError(CoffeaADError, KeyError):
    """An input file or event record lacks a branch/field the computation needs."""

    def __init__(self, missing: str, available: Iterable[str], *, where: str = "", needed_for: str = ""):
        self.missing = missing
        self.available = list(available)
        near = nearest_first(missing, self.available)
        msg = f"missing branch/field {missing!r}"
        if where:
            msg += f" in {where}"
        if needed_for:
            msg += f" (needed for {needed_for})"
        msg += f"; available, nearest first: {near}"
        if len(self.available) > len(near):
            msg += f" ... ({len(self.available)} in all)"
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class UnknownNameError(CoffeaADError, KeyError):
    """A process, recipe, processor, parameter or option name that does not exist."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        self.message = f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ModelContractError(CoffeaADError, ValueError):
    """A model's sidecar contract does not match the inputs it is given (or is malformed)."""


class ModelFileError(CoffeaADError, OSError):
    """A model file is missing, truncated or not a valid ONNX model."""


class NonFiniteInputError(CoffeaADError, ValueError):
    """NaN or inf in model inputs under the ``"raise"`` policy."""


class NonFiniteScoreError(CoffeaADError, ValueError):
    """NaN or inf in a model's output under the ``"raise"`` policy."""


class OutputExistsError(CoffeaADError, FileExistsError):
    """An output path exists already and overwriting was not asked for."""


class InputOverwriteError(CoffeaADError, ValueError):
    """An output path names one of the inputs."""


class InvalidOutputError(CoffeaADError, ValueError):
    """An existing output (fileset, run directory) is malformed or inconsistent."""


class FolderBusyError(CoffeaADError, BlockingIOError):
    """Another coffea-ad process holds the lock of an output folder."""


class FilesetError(CoffeaADError, ValueError):
    """A fileset JSON is malformed (not JSON, not ``{dataset: {"files": ...}}``)."""


class ReportInputError(CoffeaADError, ValueError):
    """A report asked for a histogram or dataset the run does not hold.

    Attributes:
        usage: True when the request (an option) is at fault, False when the run is.
    """

    def __init__(self, message: str, *, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage
