"""Each chunk's garbage cycles are freed before the next chunk (coffea_ad.execution.memory).

The automatic collector is pushed out of the way (thresholds of 10^9 allocations) so that
only the collection under test can free the cycles: without it every cycle below would
still be alive.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from collections.abc import Iterator

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea import processor

from coffea_ad.execution import run_processor
from coffea_ad.execution.memory import collect_before_chunk, unfreeze

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Missing cross-reference index:UserWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
]


class Cycle:
    """An object that refers to itself (freed only by the cyclic collector) and holds an
    array, like a chunk's NanoEvents."""

    def __init__(self, n: int) -> None:
        self.me = self
        self.data = np.ones(n)


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10**9, 10**9, 10**9)
    try:
        yield
    finally:
        unfreeze()
        gc.set_threshold(*thresholds)


def test_collection_frees_earlier_cycles_and_freezes_what_lives(no_automatic_gc):
    garbage = Cycle(1000)
    dead = weakref.ref(garbage)
    survivor = Cycle(10)
    del garbage
    assert dead() is not None  # nothing collects it on its own here
    collect_before_chunk()
    assert dead() is None
    frozen = gc.get_freeze_count()
    assert frozen > 0 and gc.is_tracked(survivor)
    # made after the freeze: the next collection frees it and walks only the new objects
    later = weakref.ref(Cycle(10))
    collect_before_chunk()
    assert later() is None
    assert gc.get_freeze_count() == frozen
    # a frozen object that turns into a cycle waits for the next freeze, as the module says
    frozen_then_dead = weakref.ref(survivor)
    del survivor
    collect_before_chunk()
    assert frozen_then_dead() is not None
    # an import (a new entry of sys.modules) makes the next call freeze again, which first
    # gives the frozen objects back and collects them
    sys.modules["_coffea_ad_test_new_module"] = types.ModuleType("_coffea_ad_test_new_module")
    try:
        collect_before_chunk()
    finally:
        del sys.modules["_coffea_ad_test_new_module"]
    assert frozen_then_dead() is None
    assert gc.get_freeze_count() > 0
    unfreeze()
    assert gc.get_freeze_count() == 0


def _frozen(obj: object) -> bool:
    """Tracked by the collector yet in none of its three generations: frozen."""
    return gc.is_tracked(obj) and all(
        id(obj) not in {id(o) for o in gc.get_objects(g)} for g in range(3))


def test_objects_the_program_froze_stay_frozen_after_the_run(no_automatic_gc):
    mine = Cycle(10)
    gc.freeze()  # the program's own freeze, before any chunk
    try:
        assert _frozen(mine)
        chunk = Cycle(1000)  # a chunk running when the run freezes
        dead = weakref.ref(chunk)
        collect_before_chunk()
        assert _frozen(chunk)
        del chunk
        collect_before_chunk()
        assert dead() is not None  # frozen while alive: its cycle waits for unfreeze()
        unfreeze()
        assert dead() is None  # the run's garbage is freed at the end ...
        assert _frozen(mine)  # ... and the program's objects stay frozen
    finally:
        gc.unfreeze()
    assert not _frozen(mine)  # the check itself tells the two apart


def test_switched_off_collector_stays_off(no_automatic_gc):
    gc.disable()
    try:
        dead = weakref.ref(Cycle(10))
        collect_before_chunk()
        assert dead() is not None
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()
    gc.collect()
    assert dead() is None


# the executor runs a copy of the processor: what the chunks saw is kept at module level
REFS: list[weakref.ref] = []
ALIVE_AT_START: list[int] = []


class LeavesCycles(processor.ProcessorABC):
    """Leaves one Cycle per chunk behind and counts, when each chunk starts, how many of the
    earlier chunks' cycles are still alive."""

    def process(self, events):
        ALIVE_AT_START.append(sum(r() is not None for r in REFS))
        REFS.append(weakref.ref(Cycle(100_000)))
        return {"events": len(events), "jets": int(ak.sum(ak.num(events.Jet.pt)))}

    def postprocess(self, accumulator):
        return accumulator


def test_iterative_run_frees_each_chunk_before_the_next(no_automatic_gc, pfnano_file):
    with uproot.open(pfnano_file) as f:
        n_events = f["Events"].num_entries
        n_jets = int(np.sum(f["Events"]["nJet"].array(library="np")))
    REFS.clear()
    ALIVE_AT_START.clear()
    out = run_processor({"cms": {"files": {str(pfnano_file): "Events"}}}, LeavesCycles(),
                        executor="iterative", chunksize=max(1, n_events // 4))
    assert out["events"] == n_events and out["jets"] == n_jets
    assert len(ALIVE_AT_START) >= 4
    # every earlier chunk's cycle was gone when the next chunk started
    assert ALIVE_AT_START == [0] * len(ALIVE_AT_START)
    assert REFS[-1]() is not None  # the last one: nothing ran after it
    # the caller's objects are the collector's again once the run is over
    assert gc.get_freeze_count() == 0
