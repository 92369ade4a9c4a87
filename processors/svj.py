"""Semivisible jets: AE-tag the two leading AK8 jets, count tags, histogram AE loss × m_T.

The workflow of the CMS semivisible-jet searches (s-channel Z' → dark quarks): events with two
AK8 jets, m_T of the dijet + MET system, jets tagged by the autoencoder loss, events in
0/1/2-tag categories. Thin over :mod:`coffea_ad.features` (m_T), :mod:`coffea_ad.inference`
(ONNX scores) and :mod:`coffea_ad.histos`.

The preselection of the CMS search (CMS, JHEP 06 (2022) 156, arXiv:2112.11125, sec. 4:
≥ 2 AK8 jets with |η| < 2.4, |Δη_j1j2| < 1.5, m_T above a threshold, MET/m_T > 0.15–0.25)
is available cut by cut; each cut is off by default so that a bare processor keeps every
event with two jets, and each one that is on adds its own cutflow step.
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
from coffea_ad.processors._common import (
    event_weights,
    leading_pair,
    met_collection,
    register_dataset,
    require_fields,
)

__all__ = ["SVJProcessor"]


class SVJProcessor(processor.ProcessorABC):
    """AE-tagged semivisible-jet analysis.

    Args:
        model: path of the ONNX model (its sidecar contract names the jet features).
        tag_threshold: AE loss above which a jet counts as tagged.
        min_pt, max_eta: jet preselection (GeV, |η|) applied before taking the leading two.
        min_mt: events with m_T below it are dropped (GeV).
        max_deta: keep events with |Δη| of the two leading jets below it (1.5 in the CMS
            search); ``None``: no cut.
        min_met_over_mt: keep events with MET/m_T above it (0.15 or 0.25 in the CMS
            search); ``None``: no cut.
        systematic: label of the ``systematic`` axis bin this run fills (``"nominal"``;
            run again with varied inputs and another label to add a variation).
        lumi_fb: weight events to yields at this luminosity (fb⁻¹) from the dataset metadata
            ``xsec`` and ``sumw``; ``None``: generator weights (1 for data).
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
        max_deta: float | None = None,
        min_met_over_mt: float | None = None,
        systematic: str = "nominal",
        lumi_fb: float | None = None,
        scorer_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = str(model)
        self.scorer = OnnxScorer(self.model, **(scorer_options or {}))
        self.jets = self.scorer.contract.jets or "FatJet"
        self.tag_threshold = float(tag_threshold)
        self.min_pt = float(min_pt)
        self.max_eta = float(max_eta)
        self.min_mt = float(min_mt)
        self.max_deta = None if max_deta is None else float(max_deta)
        self.min_met_over_mt = None if min_met_over_mt is None else float(min_met_over_mt)
        self.systematic = str(systematic)
        self.lumi_fb = None if lumi_fb is None else float(lumi_fb)

    def process(self, events: ak.Array) -> dict[str, Any]:
        dataset = events.metadata["dataset"]
        require_fields(events, {self.jets: ("pt", "eta", "phi", "mass"),
                                "MET|PFMET|PuppiMET": ("pt", "phi")}, processor="svj")
        n_all = len(events)
        weights = event_weights(events, lumi_fb=self.lumi_fb)

        jets = events[self.jets]
        scores = self.scorer.score_events(events)  # events * jets, aligned with jets
        good = (jets.pt > self.min_pt) & (abs(jets.eta) < self.max_eta)
        two_jets, lead = leading_pair(jets, good)
        lead_scores = scores[good][two_jets][:, :2]
        met = met_collection(events)[two_jets]
        mt = ak.to_numpy(transverse_mass(lead[:, 0], lead[:, 1], met))
        w = weights[two_jets]

        cutflow = {
            "all": n_all,
            f">=2 {self.jets} (pt>{self.min_pt:g}, |eta|<{self.max_eta:g})": int(two_jets.sum()),
        }
        keep = np.ones(len(mt), dtype=bool)
        if self.max_deta is not None:
            deta = np.abs(ak.to_numpy(lead[:, 0].eta) - ak.to_numpy(lead[:, 1].eta))
            keep &= deta < self.max_deta
            cutflow[f"|deta_j1j2|<{self.max_deta:g}"] = int(keep.sum())
        keep &= mt >= self.min_mt
        cutflow[f"mT>={self.min_mt:g}"] = int(keep.sum())
        if self.min_met_over_mt is not None:
            met_pt = ak.to_numpy(met.pt).astype(np.float64)
            # m_T = 0 only for massless back-to-back jets without MET: such an event fails
            ratio = np.divide(met_pt, mt, out=np.zeros_like(mt), where=mt > 0)
            keep &= ratio > self.min_met_over_mt
            cutflow[f"MET/mT>{self.min_met_over_mt:g}"] = int(keep.sum())

        lead_scores = lead_scores[keep]
        mt, w = mt[keep], w[keep]
        ntag = ak.to_numpy(ak.sum(lead_scores > self.tag_threshold, axis=1))
        max_score = ak.to_numpy(ak.max(lead_scores, axis=1))

        h_events = score_mass_histogram()
        h_events.fill(dataset=dataset, systematic=self.systematic, category=ntag,
                      score=max_score, mt=mt, weight=w)
        h_jets = jet_score_histogram()
        h_jets.fill(dataset=dataset, score=ak.to_numpy(ak.flatten(lead_scores)),
                    weight=np.repeat(w, 2))
        register_dataset({"events": h_events, "jets": h_jets}, dataset,
                         systematic=self.systematic)
        return {
            "hists": {"events": h_events, "jets": h_jets},
            "cutflow": {dataset: cutflow},
            "entries": {dataset: n_all},
            # raw generator weights, whatever lumi_fb is (the luminosity scale divides by it)
            "sumw": {dataset: float(event_weights(events).sum())},
            "provider": {self.scorer.provider: n_all},
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator
