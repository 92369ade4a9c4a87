"""Write NanoAOD/PFNano-layout ROOT files with uproot.

Collections are passed as ``events * var * record`` awkward arrays keyed by the collection name
(``"FatJet"``, ``"PFCands"``, ...); uproot writes them as ``<Name>_<field>`` jagged branches
sharing a ``n<Name>`` counter, as NanoAOD does. Scalars (``run``, ``MET_pt``, ...) are numpy
arrays keyed by their branch name.

NanoAOD counters are ``UInt_t`` (uint32); uproot 5 writes its generated counters as int32, so
:class:`EventsWriter` switches them to uint32 before the first basket is written (checked after
writing by the tests against the real ``pfnano.root``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import awkward as ak
import numpy as np
import uproot

from coffea_ad.errors import ComputationError

__all__ = ["EventsWriter"]


class EventsWriter:
    """Stream chunks of events into the ``Events`` tree of a new ROOT file.

    Args:
        path: output file (overwritten).
        compression: uproot compression. Default ZSTD level 1: measured on 1000 QCD events
            it writes 2.2x faster than ZLIB-1 (0.10 vs 0.22 ms/event) into a smaller file
            (4.0 vs 4.2 MB); ROOT >= 6.20 and uproot (through its cramjam dependency) read it.

    Use as a context manager; :meth:`close` also writes the NanoAOD ``Runs`` tree
    (``run``, ``genEventCount``, ``genEventSumw``, ``genEventSumw2``).
    """

    def __init__(self, path: str | Path, *, compression: uproot.compression.Compression | None = None):
        self.path = Path(path)
        self._file = uproot.recreate(self.path, compression=compression or uproot.ZSTD(1))
        self._tree: Any = None
        self.n_events = 0
        self.sumw = 0.0
        self.sumw2 = 0.0
        self.run = 1

    def write(self, chunk: Mapping[str, np.ndarray | ak.Array]) -> None:
        """Append one chunk; every chunk must have the same branches and types.

        Args:
            chunk: collection name -> ``events * var * record`` or branch name -> 1-D numpy.
                ``genWeight`` must be present (it feeds the ``Runs`` sums).
        """
        n = len(chunk["genWeight"])
        if n == 0:
            return
        if self._tree is None:
            types = {k: (v.type.content if isinstance(v, ak.Array) else np.asarray(v).dtype) for k, v in chunk.items()}
            with _uint32_counters():
                # room for 32 baskets per branch before uproot has to move the tree metadata
                # (a 5000-event file is 10 chunks; the move costs ~0.1 s per file)
                self._tree = self._file.mktree("Events", types, title="Events", initial_basket_capacity=32)
        self._tree.extend(dict(chunk))
        w = np.asarray(chunk["genWeight"], dtype=np.float64)
        self.n_events += n
        self.sumw += float(w.sum())
        self.sumw2 += float((w**2).sum())
        self.run = int(np.asarray(chunk["run"])[0])

    def close(self) -> None:
        """Write the ``Runs`` tree and close the file."""
        if self._file is None:
            return
        self._file["Runs"] = {
            "run": np.array([self.run], dtype=np.uint32),
            "genEventCount": np.array([self.n_events], dtype=np.int64),
            "genEventSumw": np.array([self.sumw], dtype=np.float64),
            "genEventSumw2": np.array([self.sumw2], dtype=np.float64),
        }
        self._file.close()
        self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def _uint32_counters() -> Iterator[None]:
    # uproot has no option for the counter dtype and writes the TTree/TLeaf description as soon
    # as the tree is made; its branch descriptions are plain dicts ("kind" == "counter") whose
    # dtype and title are read by Tree.write_anew, so they are switched just before that call
    try:
        from uproot.writing import _cascadetree

        original = _cascadetree.Tree.write_anew
    except (ImportError, AttributeError) as err:  # a future uproot: fail loudly, not int32
        raise ComputationError(
            "cannot write NanoAOD uint32 counters: uproot's tree writer changed "
            f"(uproot {uproot.__version__})"
        ) from err

    def write_anew(self: Any, sink: Any) -> Any:
        for datum in self._branch_data:
            if datum.get("kind") == "counter":
                datum["dtype"] = np.dtype(">u4")
                name, _, _ = datum["fTitle"].rpartition("/")
                datum["fTitle"] = f"{name}/i"
        return original(self, sink)

    _cascadetree.Tree.write_anew = write_anew
    try:
        yield
    finally:
        _cascadetree.Tree.write_anew = original
