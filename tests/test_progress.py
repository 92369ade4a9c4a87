"""``--no-progress`` hides coffea's progress bars with every executor that draws them."""

from __future__ import annotations

import io

import pytest
from coffea import processor


class EventCounter(processor.ProcessorABC):
    """Counts events per dataset (module level: the futures pool pickles it)."""

    def process(self, events):
        return {"n": {events.metadata["dataset"]: len(events)}}

    def postprocess(self, accumulator):
        return accumulator


@pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning")
@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_progress_bar_drawn_only_when_asked(executor, cms_data, monkeypatch):
    import coffea.util
    from coffea.nanoevents import NanoAODSchema
    from rich.console import Console

    from coffea_ad.execution import run_processor

    fileset = {"dy": {"files": {str(cms_data / "nano_dy.root"): "Events"}, "metadata": {}}}
    drawn = {}
    for progress in (False, True):
        # the bars go to coffea's console: a terminal-like one writing into a buffer
        buf = io.StringIO()
        monkeypatch.setattr(coffea.util, "coffea_console",
                            Console(file=buf, force_terminal=True, width=120))
        out = run_processor(fileset, EventCounter(), executor=executor, workers=2,
                            chunksize=100, progress=progress, schema=NanoAODSchema)
        assert out["n"]["dy"] == out["run_info"]["entries_processed"] > 0
        drawn[progress] = buf.getvalue()
    assert drawn[False] == ""
    assert "Processing" in drawn[True]  # the bar a user asked for is there
