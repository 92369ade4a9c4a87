"""Semivisible jets: AE-tag the two leading AK8 jets, count tags, histogram AE loss × m_T.

The workflow of the CMS semivisible-jet searches (s-channel Z' → dark quarks): events with two
AK8 jets, m_T of the dijet + MET system, jets tagged by the autoencoder loss, events in
0/1/2-tag categories. Thin over :mod:`coffea_ad.features` (m_T), :mod:`coffea_ad.inference`
(ONNX scores) and :mod:`coffea_ad.histos`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor

from coffea_ad.features import transverse_mass
from coffea_ad.histos import jet_score_histogram, score_mass_histogram
from coffea_ad.inference import OnnxScorer

__all__ = ["SVJProcessor"]


class SVJProcessor(processor.ProcessorABC):
    """AE-tagged semivisible-jet analysis.

    Args:
        model: path of the ONNX model (its sidecar contract names the jet features).
        tag_threshold: AE loss above which a jet counts as tagged.
        min_pt, max_eta: jet preselection (GeV, |η|) applied before taking the leading two.
        min_mt: events with m_T below it are dropped (GeV).
        scorer_options: passed to :class:`~coffea_ad.inference.OnnxScorer` (providers, ...).

    Output (per chunk, summed by coffea): ``hists["events"]`` (dataset × systematic × category
    × score × m_T, filled once per selected event with the larger of the two leading-jet
    losses), ``hists["jets"]`` (dataset × score, both leading jets of selected events),
    ``cutflow[dataset][step]`` (event counts), ``sumw[dataset]``, ``entries[dataset]``.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        tag_threshold: float,
        min_pt: float = 200.0,
        max_eta: float = 2.4,
        min_mt: float = 0.0,
        scorer_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = str(model)
        self.scorer = OnnxScorer(self.model, **(scorer_options or {}))
        self.jets = self.scorer.contract.jets or "FatJet"
        self.tag_threshold = float(tag_threshold)
        self.min_pt = float(min_pt)
        self.max_eta = float(max_eta)
        self.min_mt = float(min_mt)

    def process(self, events: ak.Array) -> dict[str, Any]:
        dataset = events.metadata["dataset"]
        n_all = len(events)
        weights = (
            ak.to_numpy(events.genWeight).astype(np.float64)
            if "genWeight" in events.fields
            else np.ones(n_all)
        )

        jets = events[self.jets]
        scores = self.scorer.score_events(events)  # events * jets, aligned with jets
        good = (jets.pt > self.min_pt) & (abs(jets.eta) < self.max_eta)
        jets, scores = jets[good], scores[good]

        two_jets = ak.to_numpy(ak.num(jets) >= 2)
        lead = jets[two_jets][:, :2]
        lead_scores = scores[two_jets][:, :2]
        mt = ak.to_numpy(transverse_mass(lead[:, 0], lead[:, 1], events.MET[two_jets]))
        in_mt = mt >= self.min_mt

        lead_scores = lead_scores[in_mt]
        mt = mt[in_mt]
        w = weights[two_jets][in_mt]
        ntag = ak.to_numpy(ak.sum(lead_scores > self.tag_threshold, axis=1))
        max_score = ak.to_numpy(ak.max(lead_scores, axis=1))

        h_events = score_mass_histogram()
        h_events.fill(dataset=dataset, systematic="nominal", category=ntag, score=max_score,
                      mt=mt, weight=w)
        h_jets = jet_score_histogram()
        h_jets.fill(dataset=dataset, score=ak.to_numpy(ak.flatten(lead_scores)),
                    weight=np.repeat(w, 2))

        cutflow = {
            "all": n_all,
            f">=2 {self.jets} (pt>{self.min_pt:g}, |eta|<{self.max_eta:g})": int(two_jets.sum()),
            f"mT>={self.min_mt:g}": int(in_mt.sum()),
        }
        return {
            "hists": {"events": h_events, "jets": h_jets},
            "cutflow": {dataset: cutflow},
            "entries": {dataset: n_all},
            "sumw": {dataset: float(weights.sum())},
            "provider": {self.scorer.provider: n_all},
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator
