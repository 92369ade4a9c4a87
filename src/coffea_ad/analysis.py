"""The base class of the ready analyses (``processors/``): what every processor shares, behind
named hooks.

A processor subclasses :class:`AnalysisProcessor` and

- registers its ONNX models with :meth:`~AnalysisProcessor.add_scorer` (the explicit mapping
  :attr:`~AnalysisProcessor.scorers`, which the run record reads: models, sha256, providers);
- names the branches it needs in :meth:`~AnalysisProcessor.required_fields` (checked on every
  chunk before anything is computed);
- implements :meth:`~AnalysisProcessor.process_chunk` (eager NanoEvents, the Runner path) and,
  when it supports the dask-awkward path, :meth:`~AnalysisProcessor.process_lazy`;
- gets event weights (:meth:`~AnalysisProcessor.weights`), the per-chunk bookkeeping
  (:meth:`~AnalysisProcessor.bookkeeping`: cutflow, entries, sum of weights, provider) and
  ``postprocess`` (per-dataset histograms stacked, lazy counts turned into numbers) from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from coffea import processor

__all__ = ["AnalysisProcessor", "is_lazy"]


def is_lazy(array: Any) -> bool:
    """True for a dask-awkward collection (the ``apply_to_fileset`` path), without importing
    dask."""
    return type(array).__module__.startswith("dask_awkward") and hasattr(array, "_meta")


class AnalysisProcessor(processor.ProcessorABC):
    """coffea ``ProcessorABC`` with the bookkeeping of coffea-ad's analyses.

    Args:
        systematic: label of the ``systematic`` axis bin this run fills.
        lumi_fb: weight events to yields at this luminosity (fb⁻¹) from the dataset metadata
            ``xsec`` and ``sumw``; ``None``: generator weights (1 for data).

    Attributes:
        scorers: ``{label: scorer}``, every ONNX model the processor runs, in registration
            order; the first one's execution provider is the run's ``provider``.
    """

    #: name used in messages (``coffea-ad run NAME``)
    name: ClassVar[str] = "analysis"

    def __init__(self, *, systematic: str = "nominal", lumi_fb: float | None = None) -> None:
        self.scorers: dict[str, Any] = {}
        self.systematic = str(systematic)
        self.lumi_fb = None if lumi_fb is None else float(lumi_fb)

    # ----------------------------------------------------------------------- scorers
    def add_scorer(self, label: str, scorer: Any) -> Any:
        """Register ``scorer`` under ``label`` (its model is then recorded with the run)."""
        if label in self.scorers:
            msg = f"{self.name}: a scorer is already registered as {label!r}"
            raise ValueError(msg)
        self.scorers[label] = scorer
        return scorer

    @property
    def provider(self) -> str:
        """The execution provider of the first registered scorer (``"none"`` without one)."""
        for scorer in self.scorers.values():
            return str(scorer.provider)
        return "none"

    # ----------------------------------------------------------------------- hooks
    def required_fields(self, events: Any) -> Mapping[str, Sequence[str]]:
        """``{collection: fields}`` the chunk ``events`` must carry (``"A|B"``: one of them)."""
        return {}

    def process_chunk(self, events: Any) -> dict[str, Any]:
        """The analysis of one chunk of eager NanoEvents: histograms and bookkeeping."""
        raise NotImplementedError

    def process_lazy(self, events: Any) -> dict[str, Any]:
        """The analysis on dask-awkward events (``--executor dask-awkward``)."""
        msg = f"the {self.name} processor runs on the Runner executors only, not dask-awkward"
        raise NotImplementedError(msg)

    # ----------------------------------------------------------------------- shared steps
    def process(self, events: Any) -> dict[str, Any]:
        from coffea_ad.processors._common import require_fields

        require_fields(events, self.required_fields(events), processor=self.name)
        if is_lazy(events):
            return self.process_lazy(events)
        return self.process_chunk(events)

    def weights(self, events: Any) -> Any:
        """Per-event weights of eager events (``genWeight`` × luminosity scale)."""
        from coffea_ad.processors._common import event_weights

        return event_weights(events, lumi_fb=self.lumi_fb)

    def lazy_weights(self, events: Any) -> tuple[Any, Any]:
        """``(raw generator weights, weights)`` of dask-awkward events."""
        from coffea_ad.processors._common import lazy_event_weights

        return lazy_event_weights(events, lumi_fb=self.lumi_fb)

    def bookkeeping(self, hists: dict[str, Any], *, events: Any, cutflow: dict[str, int],
                    nonfinite_scores: int | None = None) -> dict[str, Any]:
        """The output of one eager chunk: ``hists`` plus cutflow, entries, sum of weights and
        provider (see :func:`coffea_ad.processors._common.chunk_output`)."""
        from coffea_ad.processors._common import chunk_output

        return chunk_output(hists, dataset=events.metadata["dataset"], events=events,
                            cutflow=cutflow, provider=self.provider,
                            systematic=self.systematic, nonfinite_scores=nonfinite_scores)

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        from coffea_ad.processors._common import finish_output

        return finish_output(accumulator, provider=self.provider)
