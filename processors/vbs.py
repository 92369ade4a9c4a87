"""Same-sign WW + 2 jets (VBS, EFT-like): event selection, event-level VAE / VAE+DNN scores,
score histograms per dataset for σ = |BSM − SM| / √SM across cuts.

Selection in the spirit of the CMS same-sign WW measurement (CMS, Phys. Lett. B 809 (2020)
135710, arXiv:2005.01173): two same-sign leptons (e, μ) above p_T thresholds, two jets with a
large rapidity gap and invariant mass. Every cut is an option. The models see the event
variables of :func:`coffea_ad.features.vbs_variables` (the same function the training rows of
``training/vae.py`` and ``training/vae_dnn.py`` use), scored with
:class:`~coffea_ad.inference.OnnxScorer` at event level; σ and its best cut come from the
histograms (:func:`coffea_ad.stats.significance_scan`, :func:`coffea_ad.report.write_report`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.analysis import AnalysisProcessor
from coffea_ad.errors import InvalidArgumentError, ModelContractError
from coffea_ad.features import vbs_variables
from coffea_ad.histos import score_mass_histogram
from coffea_ad.inference import OnnxScorer
from coffea_ad.processors._common import per_event, raw_weights

__all__ = ["VBS_MJJ_EDGES", "VBSProcessor"]

#: m_jj binning (GeV) of the VBS histograms.
VBS_MJJ_EDGES: tuple[float, ...] = tuple(float(x) for x in np.arange(0.0, 4001.0, 100.0))


class VBSProcessor(AnalysisProcessor):
    """Same-sign dilepton + two-jet selection and event-level anomaly scores.

    Args:
        model: an event-level ONNX model on VBS variables (VAE of ``training/vae.py`` or VAE
            + DNN of ``training/vae_dnn.py``); its histogram is ``hists["events"]``.
        models: further models, ``{label: path}`` (or ``"label=path,..."`` from the CLI);
            each fills ``hists["events_LABEL"]`` (so VAE and VAE+DNN are compared on the
            same events in one run).
        jets: jet collection (AK4 ``Jet``; the tagging jets are its two leading jets).
        leptons: lepton collections merged and p_T-ordered (as in ``vbs_variables``).
        min_lep1_pt, min_lep2_pt: leading / subleading lepton p_T (GeV).
        max_lep_eta: |η| of both leptons.
        same_sign: require the two leading leptons to have the same charge.
        min_jet_pt: both leading jets (GeV).
        max_jet_eta: |η| of both leading jets (forward jets reach 4.7).
        min_mjj: m_jj of the two leading jets (GeV).
        min_deta_jj: |Δη_jj| of the two leading jets.
        mjj_edges: m_jj bins of the histograms (GeV).
        systematic: label of the ``systematic`` axis bin this run fills.
        lumi_fb: weight events to yields at this luminosity (fb⁻¹) from the dataset
            metadata ``xsec`` and ``sumw`` (what σ = |BSM − SM|/√SM needs); ``None``:
            generator weights (1 for data).
        scorer_options: passed to every :class:`~coffea_ad.inference.OnnxScorer`.

    Output: ``hists["events"]`` and ``hists["events_LABEL"]`` (dataset × systematic ×
    category × score × mjj, one category 0 = selected; score axis linear in [0, 1] for a
    classifier probability, log-spaced for a loss), ``cutflow[dataset]`` (one step per
    cut), ``entries``, ``sumw``, ``provider``.
    """

    name = "vbs"

    def __init__(
        self,
        model: str | Path,
        *,
        models: Mapping[str, str | Path] | None = None,
        jets: str = "Jet",
        leptons: Sequence[str] = ("Electron", "Muon"),
        min_lep1_pt: float = 25.0,
        min_lep2_pt: float = 20.0,
        max_lep_eta: float = 2.5,
        same_sign: bool = True,
        min_jet_pt: float = 50.0,
        max_jet_eta: float = 4.7,
        min_mjj: float = 500.0,
        min_deta_jj: float = 2.5,
        mjj_edges: Sequence[float] = VBS_MJJ_EDGES,
        systematic: str = "nominal",
        lumi_fb: float | None = None,
        scorer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(systematic=systematic, lumi_fb=lumi_fb)
        self.model = str(model)
        if isinstance(models, str):  # from the CLI: --set models=vae_dnn=models/vae_dnn.onnx
            models = dict(item.split("=", 1) for item in models.split(",") if item.strip())
        self.labels: list[str] = []
        for label, path in {"": model, **dict(models or {})}.items():
            if label and not label.isidentifier():
                msg = f"vbs: model labels must be identifiers, found {label!r}"
                raise InvalidArgumentError(msg)
            scorer = OnnxScorer(path, **(scorer_options or {}))
            if scorer.contract.level != "event":
                msg = (f"vbs needs event-level models, found level {scorer.contract.level!r} "
                       f"in {path}")
                raise ModelContractError(msg)
            self.add_scorer(label or "model", scorer)
            self.labels.append(label)
        self.scorer = self.scorers["model"]
        self.jets = jets
        self.leptons = tuple(leptons)
        self.min_lep1_pt, self.min_lep2_pt = float(min_lep1_pt), float(min_lep2_pt)
        self.max_lep_eta = float(max_lep_eta)
        self.same_sign = bool(same_sign)
        self.min_jet_pt, self.max_jet_eta = float(min_jet_pt), float(max_jet_eta)
        self.min_mjj, self.min_deta_jj = float(min_mjj), float(min_deta_jj)
        self.mjj_edges = [float(e) for e in mjj_edges]

    def scorer_for(self, label: str) -> OnnxScorer:
        """The scorer of ``model`` (label ``""``) or of ``models[label]``."""
        return self.scorers[label or "model"]

    def _histogram(self, scorer: OnnxScorer) -> Any:
        classifier = scorer.contract.kind.endswith("classifier")
        return score_mass_histogram(
            mass="mjj", mass_label=r"$m_{jj}$ [GeV]", mass_edges=self.mjj_edges,
            score_label=f"{scorer.contract.name} {scorer.contract.score}",
            score_bins=100 if classifier else 120,
            score_range=(0.0, 1.0) if classifier else (1e-3, 1e2),
            log_score=not classifier, categories=(0,), category_label="selected")

    def _lepton_charges(self, events: ak.Array) -> ak.Array:
        """Charges of the merged leptons in the p_T order ``vbs_variables`` uses."""
        present = [n for n in self.leptons if n in events.fields]
        pt = ak.concatenate([events[n].pt for n in present], axis=1)
        charge = ak.concatenate([events[n].charge for n in present], axis=1)
        return charge[ak.argsort(pt, axis=1, ascending=False)]

    def cutflow_steps(self) -> list[str]:
        names = ["all", ">=2 leptons",
                 f"lepton pt>{self.min_lep1_pt:g},{self.min_lep2_pt:g} |eta|<{self.max_lep_eta:g}"]
        if self.same_sign:
            names.append("same-sign leptons")
        return [*names, ">=2 jets", f"jet pt>{self.min_jet_pt:g} |eta|<{self.max_jet_eta:g}",
                f"mjj>{self.min_mjj:g}", f"|deta_jj|>{self.min_deta_jj:g}"]

    def required_fields(self, events: Any) -> dict[str, Sequence[str]]:
        needs: dict[str, Sequence[str]] = {self.jets: ("pt", "eta", "phi", "mass"),
                                          "MET|PFMET|PuppiMET": ("pt", "phi")}
        present = [n for n in self.leptons if n in events.fields]
        for name in present or ["|".join(self.leptons)]:
            needs[name] = ("pt", "eta", "phi", "mass", "charge")
        return needs

    def _scorers(self, fields: Sequence[str]) -> list[tuple[str, OnnxScorer]]:
        out = []
        for label in self.labels:
            scorer = self.scorer_for(label)
            missing = [f for f in scorer.contract.features if f not in fields]
            if missing:
                msg = (f"model {scorer.contract.name!r} needs features {missing} that "
                       f"vbs_variables does not make; it makes {list(fields)}")
                raise ModelContractError(msg)
            out.append(("events" if not label else f"events_{label}", scorer))
        return out

    def histograms(self) -> dict[str, Any]:
        return {("events" if not label else f"events_{label}"):
                self._histogram(self.scorer_for(label)) for label in self.labels}

    def columns(self, events: ak.Array, *, scale: float | None) -> ak.Array:
        """The preselection step by step, the event variables and the scores of the selected
        events (pure awkward: runs on eager events, on each dask-awkward partition and on
        typetracers)."""
        v = vbs_variables(events, jets=self.jets, leptons=self.leptons)
        genw = raw_weights(events, like=v.n_jets)
        weights = genw if scale is None else genw * scale

        def f64(field: str) -> ak.Array:
            return ak.values_astype(v[field], np.float64)

        charges = ak.fill_none(ak.pad_none(self._lepton_charges(events), 2, axis=1), 0)
        jet_eta = ak.fill_none(ak.pad_none(events[self.jets].eta, 2, axis=1), np.inf)
        masks = [
            v.n_leptons >= 2,
            (f64("lep1_pt") > self.min_lep1_pt) & (f64("lep2_pt") > self.min_lep2_pt)
            & (abs(f64("lep1_eta")) < self.max_lep_eta) & (abs(f64("lep2_eta")) < self.max_lep_eta),
        ]
        if self.same_sign:
            masks.append(charges[:, 0] * charges[:, 1] > 0)
        masks += [
            v.n_jets >= 2,
            (f64("jet1_pt") > self.min_jet_pt) & (f64("jet2_pt") > self.min_jet_pt)
            & (abs(jet_eta[:, 0]) < self.max_jet_eta) & (abs(jet_eta[:, 1]) < self.max_jet_eta),
            f64("mjj") > self.min_mjj,
            f64("deta_jj") > self.min_deta_jj,
        ]
        keep = ak.ones_like(v.n_jets, dtype=bool)
        cutflow = {"c0": keep}
        for k, mask in enumerate(masks, start=1):
            keep = keep & mask
            cutflow[f"c{k}"] = keep

        selected = v[keep]
        w = weights[keep]
        mjj = ak.values_astype(selected.mjj, np.float64)
        cols: dict[str, Any] = {}
        for key, scorer in self._scorers(selected.fields):
            score = ak.values_astype(scorer(selected[scorer.contract.features]), np.float64)
            cols[key] = per_event(ak.zip({"category": ak.zeros_like(mjj, dtype=np.int64),
                                          "score": score, "mjj": mjj, "weight": w}), keep)
        cols["_cutflow"] = ak.zip(cutflow, depth_limit=1)
        cols["_genw"] = genw
        return ak.zip(cols, depth_limit=1)
