"""Exceptions of coffea-ad.

Each subclasses the built-in exception that callers already catch (uproot/awkward style), and
each message says what was expected and what was found.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CoffeaADError",
    "ComputationError",
    "FilesetError",
    "FolderBusyError",
    "InputOverwriteError",
    "InvalidArgumentError",
    "InvalidOutputError",
    "MissingBranchError",
    "MissingDependencyError",
    "MissingFileError",
    "MissingMetadataError",
    "ModelContractError",
    "ModelFileError",
    "NonFiniteInputError",
    "NonFiniteScoreError",
    "OutputExistsError",
    "OutputWriteError",
    "ReportInputError",
    "StatisticsInputError",
    "UnknownNameError",
    "UnsupportedError",
    "WrongTypeError",
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


class InvalidArgumentError(CoffeaADError, ValueError):
    """An argument or setting outside its allowed values, or inconsistent with another one."""


class StatisticsInputError(InvalidArgumentError):
    """Inputs of a statistical method (scores, weights, histograms, cuts, fit ranges) that do
    not fit together or that the method cannot use."""


class MissingFileError(CoffeaADError, FileNotFoundError):
    """A file the computation needs (working point, corrections, generator card) is absent."""


class WrongTypeError(CoffeaADError, TypeError):
    """An argument, processor or output of the wrong kind."""


class ComputationError(CoffeaADError, RuntimeError):
    """A computation that could not finish (an external generator, a fit, a writer)."""


class UnsupportedError(CoffeaADError, NotImplementedError):
    """A valid request this code path does not support (it names the path that does)."""


class MissingMetadataError(CoffeaADError, KeyError):
    """Dataset metadata or a configuration entry the computation needs is absent."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(CoffeaADError, ModuleNotFoundError):
    """An optional package (or a module of this one) that the requested feature needs cannot
    be imported; the message names the extra to install."""


class OutputWriteError(CoffeaADError, OSError):
    """An output file cannot be created or written."""
