"""Model-agnostic dijet bump hunt: jet scores of the two leading jets, QR-decorrelated
categories, m_jj spectra per category.

The workflow of the CMS model-agnostic dijet search (CMS, arXiv:2412.03747): a jet-level
anomaly score (particle VAE, dense AE, ...) of the two leading AK8 jets combined into one event
score (min, max or sum); the |Δη_jj| > 1.4 sideband is the training region, |Δη_jj| ≤ 1.4 the
search region; quantile-regression thresholds of the score versus m_jj split events into
categories that keep the background m_jj shape, and each category's m_jj spectrum is fitted
with the dijet function (:mod:`coffea_ad.stats.bumphunt`).

Thin over :mod:`coffea_ad.features` (jet features, m_jj), :mod:`coffea_ad.inference` (scores),
:mod:`coffea_ad.stats.quantile` (thresholds read from the correctionlib JSON written by
:func:`~coffea_ad.stats.thresholds_to_correctionlib`, evaluated per event with correctionlib)
and :mod:`coffea_ad.histos`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from coffea_ad.analysis import AnalysisProcessor
from coffea_ad.errors import InvalidArgumentError, UnknownNameError
from coffea_ad.features import dijet_mass
from coffea_ad.histos import jet_score_histogram, score_mass_histogram
from coffea_ad.inference import OnnxScorer
from coffea_ad.processors._common import (
    leading_pair,
    per_event,
    raw_weights,
    refuse_lazy_flag,
    scores_flagged,
)

__all__ = ["DEFAULT_MJJ_EDGES", "BumpHuntProcessor", "Combine"]

Combine = Literal["min", "max", "sum"]

#: m_jj binning (GeV): 100 GeV bins up to 8 TeV (the search's range; empty bins are cheap).
DEFAULT_MJJ_EDGES: tuple[float, ...] = tuple(float(x) for x in np.arange(0.0, 8001.0, 100.0))

_COMBINE = {"min": np.minimum, "max": np.maximum, "sum": np.add}


class BumpHuntProcessor(AnalysisProcessor):
    """Dijet events in QR-decorrelated score categories, m_jj spectra per category.

    Args:
        model: path of a jet-level ONNX model (its contract names the jet collection and the
            features, e.g. the particle VAE of ``training/particle_vae.py``).
        thresholds: correctionlib JSON of score thresholds versus m_jj
            (:func:`coffea_ad.stats.thresholds_to_correctionlib`), or the ``.onnx``
            quantile-regression model of ``training/qr.py`` (fitted to the same ``combine``);
            an event is in category k when its score passes k thresholds. ``None``: every
            event in category 0 (the run that produces the sideband histograms the
            thresholds are derived from).
        threshold_name: name of the correction inside the JSON.
        combine: how the two leading-jet scores make the event score (``"min"``: both jets
            anomalous; ``"max"``; ``"sum"``).
        min_pt, max_eta: jet preselection (GeV, |η|) applied before taking the leading two.
        sideband_deta: events with |Δη_jj| above it form the sideband (training region),
            the others the search region (1.4 in the CMS search).
        mjj_edges: m_jj bin edges (GeV) of the histograms.
        systematic: label of the ``systematic`` axis bin this run fills.
        lumi_fb: weight events to yields at this luminosity (fb⁻¹) from the dataset metadata
            ``xsec`` and ``sumw``; ``None``: generator weights (1 for data).
        scorer_options: passed to :class:`~coffea_ad.inference.OnnxScorer`.

    Output (summed by coffea over chunks): ``hists["events"]`` (search region) and
    ``hists["sideband"]`` (|Δη_jj| > ``sideband_deta``), each dataset × systematic ×
    category × score × mjj from :func:`coffea_ad.histos.score_mass_histogram`;
    ``hists["jets"]`` (dataset × score, both leading jets of every dijet event);
    ``cutflow[dataset]``, ``entries``, ``sumw``, ``provider``.
    """

    name = "bumphunt"
    counts_nonfinite = True

    def __init__(
        self,
        model: str | Path,
        *,
        thresholds: str | Path | None = None,
        threshold_name: str = "qr_threshold",
        combine: Combine = "min",
        min_pt: float = 300.0,
        max_eta: float = 2.5,
        sideband_deta: float = 1.4,
        mjj_edges: Sequence[float] = DEFAULT_MJJ_EDGES,
        systematic: str = "nominal",
        lumi_fb: float | None = None,
        scorer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(systematic=systematic, lumi_fb=lumi_fb)
        if combine not in _COMBINE:
            raise UnknownNameError("score combination", combine, list(_COMBINE))
        self.model = str(model)
        self.scorer = self.add_scorer("model", OnnxScorer(self.model, **(scorer_options or {})))
        if self.scorer.contract.level != "jet":
            msg = (f"bumphunt needs a jet-level model (one score per jet), found level "
                   f"{self.scorer.contract.level!r} in {self.model}")
            raise InvalidArgumentError(msg)
        self.jets = self.scorer.contract.jets or "FatJet"
        self.combine: Combine = combine
        self.min_pt = float(min_pt)
        self.max_eta = float(max_eta)
        self.sideband_deta = float(sideband_deta)
        self.mjj_edges = [float(e) for e in mjj_edges]
        self.threshold_name = threshold_name
        self.thresholds = None if thresholds is None else str(thresholds)
        self._thresholds_json: str | None = None
        self._evaluator: Any = None
        self.qr_scorer: OnnxScorer | None = None
        if thresholds is None:
            n_q = 0
        elif str(thresholds).endswith(".onnx"):
            # the quantile-regression network of training/qr.py: m_jj -> thresholds
            self.qr_scorer = self.add_scorer("thresholds",
                                             OnnxScorer(thresholds, **(scorer_options or {})))
            extra = self.qr_scorer.contract.extra
            if self.qr_scorer.contract.kind != "quantile_regression" or "quantiles" not in extra:
                msg = (f"bumphunt: expected a quantile-regression model (training/qr.py) as "
                       f"thresholds, found kind {self.qr_scorer.contract.kind!r} in {thresholds}")
                raise InvalidArgumentError(msg)
            if extra.get("combine", combine) != combine:
                msg = (f"bumphunt: the thresholds in {thresholds} were fitted to the "
                       f"{extra['combine']!r} score, found combine={combine!r}")
                raise InvalidArgumentError(msg)
            n_q = len(extra["quantiles"])
        else:
            # The JSON travels with the processor (workers may not see the client's disk);
            # the evaluable correctionlib object is built lazily on each worker, never pickled.
            self._thresholds_json = Path(thresholds).read_text()
            n_q = self._threshold_evaluator().quantiles.size
        self.categories = list(range(n_q + 1))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_evaluator"] = None
        return state

    def _threshold_evaluator(self) -> Any:
        if self._evaluator is None:
            import correctionlib.schemav2 as cs

            from coffea_ad.stats import thresholds_from_correctionlib

            cset = cs.CorrectionSet.model_validate_json(self._thresholds_json)
            self._evaluator = thresholds_from_correctionlib(cset, name=self.threshold_name)
        return self._evaluator

    def _categories(self, score: np.ndarray, mjj: np.ndarray) -> np.ndarray:
        """Number of thresholds each event's score passes (0 without thresholds)."""
        if self._thresholds_json is not None:
            return self._threshold_evaluator().categories(score, mjj)
        if self.qr_scorer is not None and len(score):
            thr = np.asarray(self.qr_scorer(mjj.astype(np.float32)[:, None]), np.float64)
            # sorting each row is the monotone rearrangement of crossing quantile curves
            # (Chernozhukov, Fernandez-Val, Galichon, Econometrica 78 (2010) 1093)
            thr = np.sort(thr.reshape(len(score), -1), axis=1)
            return np.count_nonzero(score[:, None] >= thr, axis=1).astype(np.intp)
        return np.zeros(len(score), dtype=np.intp)

    def _histogram(self) -> Any:
        return score_mass_histogram(
            mass="mjj", mass_label=r"$m_{jj}$ [GeV]", mass_edges=self.mjj_edges,
            score_label=f"{self.combine} jet score", categories=self.categories,
            category_label="QR category (thresholds passed)" if len(self.categories) > 1
            else "all (no thresholds)")

    def required_fields(self, events: Any) -> dict[str, tuple[str, ...]]:
        return {self.jets: ("pt", "eta", "phi", "mass")}

    def histograms(self) -> dict[str, Any]:
        return {"events": self._histogram(), "sideband": self._histogram(),
                "jets": jet_score_histogram(score_label="jet score")}

    def cutflow_steps(self) -> list[str]:
        return ["all", f">=2 {self.jets} (pt>{self.min_pt:g}, |eta|<{self.max_eta:g})",
                f"search region |deta_jj|<={self.sideband_deta:g}"]

    def check_lazy(self) -> None:
        refuse_lazy_flag(self.scorer)

    def columns(self, events: ak.Array, *, scale: float | None) -> ak.Array:
        jets = events[self.jets]
        genw = raw_weights(events, like=ak.num(jets, axis=1))
        weights = genw if scale is None else genw * scale
        # events * jets, aligned with jets
        scores, flagged = scores_flagged(self.scorer, events)
        good = (jets["pt"] > self.min_pt) & (abs(jets["eta"]) < self.max_eta)
        has_pair, lead = leading_pair(jets, good)
        lead_scores = ak.values_astype(scores[good][has_pair][:, :2], np.float64)
        score = _COMBINE[self.combine](lead_scores[:, 0], lead_scores[:, 1])
        mjj = dijet_mass(lead[:, 0], lead[:, 1])
        deta = abs(ak.values_astype(lead[:, 0]["eta"], np.float64)
                   - ak.values_astype(lead[:, 1]["eta"], np.float64))
        w = weights[has_pair]
        rows = ak.zip({"category": self._category_column(score, mjj), "score": score,
                       "mjj": mjj, "weight": w})
        sideband = deta > self.sideband_deta
        cols = {
            "events": per_event(rows[~sideband], ~sideband, has_pair),
            "sideband": per_event(rows[sideband], sideband, has_pair),
            # both leading jets of every dijet event
            "jets": per_event(ak.zip({"score": lead_scores, "weight": w}), has_pair),
            "_cutflow": ak.zip({"c0": ak.ones_like(has_pair), "c1": has_pair,
                                "c2": per_event(~sideband, has_pair)}, depth_limit=1),
            "_genw": genw,
        }
        if flagged is not None:
            cols["_nonfinite"] = flagged
        return ak.zip(cols, depth_limit=1)

    def _category_column(self, score: ak.Array, mjj: ak.Array) -> ak.Array:
        """:meth:`_categories` as an awkward column (numpy inside; the thresholds, correctionlib
        or a QR network, run on the chunk's or partition's values)."""
        if ak.backend(score, mjj) == "typetracer":  # dask-awkward tracing which columns are read
            ak.typetracer.touch_data(score)
            ak.typetracer.touch_data(mjj)
            return ak.Array(ak.Array(np.zeros(0, np.int64)).layout.to_typetracer(forget_length=True))
        return ak.Array(self._categories(ak.to_numpy(score).astype(np.float64),
                                         ak.to_numpy(mjj).astype(np.float64)).astype(np.int64))
