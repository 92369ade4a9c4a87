"""Which failures come from reading the input (skippable) and which from the analysis code."""

from __future__ import annotations

from collections.abc import Iterator

import uproot

__all__ = ["READER_ERRORS", "describe", "is_reader_error"]

READER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    uproot.exceptions.KeyInFileError,
    uproot.deserialization.DeserializationError,
)


def _exception_chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_reader_error(err: BaseException) -> bool:
    """True when ``err`` (or an exception it chains to) comes from reading the input file:
    an ``OSError``, a missing tree/branch, an uproot deserialization error, or any exception
    raised inside uproot (a corrupt basket raises ``ValueError`` from its decompressor).

    Errors of the processor's own code are not reader errors: skipping bad files never hides
    an analysis bug.
    """
    for e in _exception_chain(err):
        if isinstance(e, READER_ERRORS):
            return True
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("uproot"):
            return True
    return False


def describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


