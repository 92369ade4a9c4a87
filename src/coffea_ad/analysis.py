"""The base class of the ready analyses (``processors/``): what every processor shares, behind
named hooks.

A processor subclasses :class:`AnalysisProcessor` and

- registers its ONNX models with :meth:`~AnalysisProcessor.add_scorer` (the explicit mapping
  :attr:`~AnalysisProcessor.scorers`, which the run record reads: models, sha256, providers);
- names the branches it needs in :meth:`~AnalysisProcessor.required_fields` (checked on every
  chunk before anything is computed);
- writes its selection, features and scores ONCE, as :meth:`~AnalysisProcessor.columns`: an
  eager function of one awkward chunk returning per-event columns (histogram fills, cutflow
  masks, generator weights). The Runner executors call it on each chunk; on dask-awkward
  events the same function is mapped over the partitions (``dask_awkward.map_partitions``,
  as :mod:`coffea_ad.features` does), so the two paths cannot drift apart;
- names its empty histograms (:meth:`~AnalysisProcessor.histograms`) and cutflow steps
  (:meth:`~AnalysisProcessor.cutflow_steps`).

The histograms are filled from the columns in one place
(:func:`coffea_ad.processors._common.fill_histograms`: ``hist`` on a chunk, ``hist.dask`` on
dask-awkward events), the bookkeeping (cutflow, entries, sum of weights, provider) is counted
from the same columns (numbers on a chunk, ``dask_awkward.sum`` reductions lazily), and
``postprocess`` stacks the per-dataset histograms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from coffea import processor

from coffea_ad.errors import InvalidArgumentError

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
    #: whether the output carries ``nonfinite_scores`` (rows scored -1 under
    #: ``nonfinite="flag"``, counted from the ``_nonfinite`` column)
    counts_nonfinite: ClassVar[bool] = False

    def __init__(self, *, systematic: str = "nominal", lumi_fb: float | None = None) -> None:
        self.scorers: dict[str, Any] = {}
        self.systematic = str(systematic)
        self.lumi_fb = None if lumi_fb is None else float(lumi_fb)

    # ----------------------------------------------------------------------- scorers
    def add_scorer(self, label: str, scorer: Any) -> Any:
        """Register ``scorer`` under ``label`` (its model is then recorded with the run)."""
        if label in self.scorers:
            msg = f"{self.name}: a scorer is already registered as {label!r}"
            raise InvalidArgumentError(msg)
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

    def histograms(self) -> dict[str, Any]:
        """The empty (eager) histograms, by name; the lazy path fills twins of them."""
        raise NotImplementedError

    def cutflow_steps(self) -> list[str]:
        """Cutflow step names, in the order of the ``_cutflow`` columns (``c0``, ``c1``, ...);
        the first step is ``"all"``."""
        raise NotImplementedError

    def columns(self, events: Any, *, scale: float | None) -> Any:
        """The analysis of one eager chunk as per-event columns (an awkward record array, one
        entry per event). It must also run on typetracers (dask-awkward's column-projection
        pass): pure awkward does, and a selection written with numpy on the flat buffers
        does through :func:`coffea_ad.processors._common.eager_columns`. The columns:

        - ``NAME`` or ``NAME|axis=label|...``: a list per event of records whose fields are
          the axes (and ``weight``) of histogram ``NAME``, with string axes fixed to the
          labels (the ``dataset`` axis, and ``systematic`` when not given, are set by the
          caller); see :func:`coffea_ad.processors._common.per_event`;
        - ``_cutflow``: ``{c0, c1, ...}`` booleans (or lists of them) per step of
          :meth:`cutflow_steps`; ``_genw``: raw generator weight; optional ``_nonfinite``
          (flagged rows per event) and other ``_``-prefixed columns for
          :meth:`extra_output`.

        ``scale`` multiplies the generator weights (the luminosity scale; ``None``: raw).
        """
        raise NotImplementedError

    def check_lazy(self) -> None:
        """Refuse, with the reason, settings the dask-awkward path cannot run."""

    def extra_output(self, columns: Any, dataset: str) -> dict[str, Any]:
        """Further outputs of an eager chunk, from its columns (Runner executors only)."""
        return {}

    # ----------------------------------------------------------------------- shared steps
    def process(self, events: Any) -> dict[str, Any]:
        from coffea_ad.processors import _common

        _common.require_fields(events, self.required_fields(events), processor=self.name)
        dataset = events.metadata["dataset"]
        scale = (None if self.lumi_fb is None
                 else _common.lumi_scale(events.metadata, self.lumi_fb))
        hists = self.histograms()
        steps = self.cutflow_steps()
        if is_lazy(events):
            self.check_lazy()
            import dask_awkward as dak

            columns = dak.map_partitions(self.columns, events, scale=scale,
                                         label=f"{self.name}-columns")
            hists = {name: _common.lazy_twin(h) for name, h in hists.items()}
            _common.fill_histograms(hists, columns, dataset=dataset, systematic=self.systematic)
            return {"hists": hists,
                    **_common.lazy_bookkeeping(columns, dataset=dataset, steps=steps)}
        columns = self.columns(events, scale=scale)
        _common.fill_histograms(hists, columns, dataset=dataset, systematic=self.systematic)
        out = _common.chunk_output(hists, dataset=dataset, columns=columns, steps=steps,
                                   provider=self.provider, systematic=self.systematic,
                                   count_nonfinite=self.counts_nonfinite)
        out.update(self.extra_output(columns, dataset))
        return out

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        from coffea_ad.processors._common import finish_output

        return finish_output(accumulator, provider=self.provider)
