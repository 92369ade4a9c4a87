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
from typing import Any, Literal

import awkward as ak
import hist
import numpy as np

from coffea_ad.analysis import AnalysisProcessor
from coffea_ad.errors import (
    InvalidArgumentError,
    MissingFileError,
    UnknownNameError,
    UnsupportedError,
)
from coffea_ad.features import transverse_mass
from coffea_ad.histos import DEFAULT_MT_EDGES, jet_score_histogram, score_mass_histogram
from coffea_ad.inference import OnnxScorer, WorkingPoint, read_working_point
from coffea_ad.processors._common import (
    eager_columns,
    event_rows,
    leading_pair_index,
    met_collection,
    raw_weights,
    refuse_lazy_flag,
)
from coffea_ad.systematics import (
    correctionlib_jet_variations,
    treemaker_jet_variations,
    with_mass,
)

__all__ = ["ABCD_COARSE_EDGES", "ABCD_VARIABLES", "AbcdBinning", "AbcdVariable", "SVJProcessor",
           "abcd_histogram"]

AbcdVariable = Literal["deta_jj", "met_over_mt"]
AbcdBinning = Literal["coarse", "fine"]

#: Second ABCD variables: name -> (axis label, bin edges). The names are those of
#: :func:`coffea_ad.features.event_variables` (what ``dense_ae``'s ``disco_variable`` takes), so
#: one name means the same quantity in the processor, the training and the report.
ABCD_VARIABLES: dict[str, tuple[str, tuple[float, ...]]] = {
    # |Δη| of two jets with |η| < 2.4 is below 4.8; 0.1 steps keep 1.3, 1.5 (CMS cuts) as edges
    "deta_jj": (r"$|\Delta\eta_{j_1 j_2}|$",
                tuple(round(float(x), 1) for x in np.arange(0.0, 5.01, 0.1))),
    # R_T = MET/m_T is at most 1 (m_T >= MET for massless jets); 0.025 steps keep the CMS
    # cuts 0.15 and 0.25 as edges
    "met_over_mt": (r"$R_{T} = p_{T}^{miss}/m_{T}$",
                    tuple(round(float(x), 3) for x in np.arange(0.0, 1.001, 0.025))),
}


#: Second-variable edges of the default (coarse) ABCD histogram: the cut values of the CMS
#: search (|Δη_jj| < 1.1–2.0, R_T > 0.15–0.25) stay edges, so every cut a user of that
#: search chooses is still exact; the fine edges of :data:`ABCD_VARIABLES` are on request.
ABCD_COARSE_EDGES: dict[str, tuple[float, ...]] = {
    "deta_jj": (0.0, 1.1, 1.3, 1.5, 2.0, 5.0),
    "met_over_mt": (0.0, 0.1, 0.15, 0.2, 0.25, 1.0),
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def abcd_histogram(variable: AbcdVariable = "deta_jj", *,
                   binning: AbcdBinning = "coarse") -> hist.Hist:
    """Event histogram for ABCD: ``dataset × systematic × score × VARIABLE × mt``, weighted.

    The dataset, systematic and score axes are those of
    :func:`coffea_ad.histos.score_mass_histogram` (same names and binning); the second axis is
    named after the variable (``deta_jj`` or ``met_over_mt``), with its under/overflow kept so
    that no event is lost on either side of an ABCD cut.

    ``binning="coarse"`` (default): the second variable in :data:`ABCD_COARSE_EDGES` (the
    CMS cut values) and m_T in 200 GeV bins (every other edge of the events histogram):
    437 kB per dataset and systematic, so that with ``hists["events"]`` a dataset and
    systematic cost under 1 MB (a signal grid of 100 points x 5 systematics: 0.4 GB, not
    3 GB, on the client and in every Dask task's output). ``"fine"``: the edges of
    :data:`ABCD_VARIABLES` (0.1 in |Δη|, 0.025 in R_T) and the events histogram's m_T
    (6.3 MB per dataset and systematic), for choosing cuts away from the CMS values. Every
    coarse edge is a fine edge: the coarse histogram is sums of the fine one.

    Args:
        variable: the second ABCD variable, a key of :data:`ABCD_VARIABLES`.
        binning: ``"coarse"`` or ``"fine"``.

    Returns:
        An empty :class:`hist.Hist` with ``Weight`` storage.

    Raises:
        UnknownNameError: ``variable`` is not a key of :data:`ABCD_VARIABLES`.
    """
    if variable not in ABCD_VARIABLES:
        raise UnknownNameError("ABCD variable", variable, ABCD_VARIABLES)
    _check_binning(binning)
    label, edges = ABCD_VARIABLES[variable]
    if binning == "coarse":
        edges = ABCD_COARSE_EDGES[variable]
        base = score_mass_histogram(mass_edges=DEFAULT_MT_EDGES[::2])
    else:
        base = score_mass_histogram()
    axes = [ax for ax in base.axes if ax.name != "category"]
    y_axis = hist.axis.Variable(list(edges), name=variable, label=label)
    return hist.Hist(*axes[:3], y_axis, axes[3], storage=hist.storage.Weight())


def _check_binning(binning: str) -> None:
    if binning not in ("coarse", "fine"):
        msg = f"abcd_binning must be 'coarse' or 'fine', found {binning!r}"
        raise InvalidArgumentError(msg)


class SVJProcessor(AnalysisProcessor):
    """AE-tagged semivisible-jet analysis.

    Args:
        model: path of the ONNX model (its sidecar contract names the jet features).
        tag_threshold: AE loss above which a jet counts as tagged; or ``"model"`` (the
            correctionlib working point ``NAME_wp.json`` next to the model, constant or
            binned in jet p_T) or the path of such a JSON.
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
        abcd_variable: the second ABCD variable of ``hists["abcd"]`` (see below):
            ``"deta_jj"`` (|Δη| of the two leading jets, default) or ``"met_over_mt"``
            (R_T = MET/m_T).
        abcd_binning: ``"coarse"`` (default: the CMS cut values as edges of the second
            variable, 200 GeV in m_T; under 1 MB per dataset and systematic with the other
            histograms) or ``"fine"`` (0.1 in |Δη|, 0.025 in R_T, 100 GeV in m_T: 6.3 MB);
            see :func:`abcd_histogram`.
        jets: jet collection (default the model's); another one its contract declares
            sources for, e.g. ``"JetsAK8"`` (TreeMaker) or ``"ScoutingFatJet"``.
        met: MET collection with ``pt, phi`` (default ``MET``, ``PFMET``, ``PuppiMET``, or
            TreeMaker's scalar ``MET``/``METPhi``), e.g. ``"ScoutingMET"``.
        variations: fill the ``systematic`` axis with JES/JER up/down next to ``systematic``:
            ``"treemaker"`` (the variations the ntuple stores) or the path of a correctionlib
            JERC JSON (NanoAOD; :func:`coffea_ad.systematics.correctionlib_jet_variations`).
            Jets are re-ordered, selection, m_T and scores recomputed for each; MET is kept
            nominal (TreeMaker's METUp/METDown do not say which source each entry is).
        gen_jets: generator-jet collection for the JER matching of ``variations`` (NanoAOD).

    Output (per chunk, summed by coffea): ``hists["events"]`` (dataset × systematic × category
    × score × m_T, filled once per selected event with the larger of the two leading-jet
    losses), ``hists["abcd"]`` (dataset × systematic × score × ``abcd_variable`` × m_T, the
    same events and score; :func:`abcd_histogram`), ``hists["jets"]`` (dataset × score, both
    leading jets of selected events), ``cutflow[dataset][step]`` (event counts),
    ``sumw[dataset]``, ``entries[dataset]``.

    The selection needs no score, so it runs first and the model scores only the jets these
    histograms use: the two leading jets of each selected event (of each variation). For a
    constituent-level model that skips the inputs and the inference of every other jet; a
    NaN score of a jet no histogram uses neither raises nor counts under ``nonfinite``.

    Why |Δη_jj| is the default second ABCD variable: the AE loss measures the jets' internal
    structure, while |Δη_jj| = 2 artanh|cos θ*| measures the angle of the hard 2 → 2
    scattering. For QCD the two factorize at fixed jet p_T (the shower does not know the
    scattering angle), and QCD is t-channel dominated (forward, large |Δη|) while a heavy
    s-channel Z' gives central jets (small |Δη|), so |Δη| is both discriminating and close to
    independent of the loss: the region split the CMS dijet and semivisible-jet searches use
    (|Δη_jj| < 1.3–1.5 signal-like, above it a control region; CMS, JHEP 06 (2022) 156,
    arXiv:2112.11125). Two residual correlations remain and are what the closure test
    (``studies/validate_abcd.py``) measures: within one m_T bin a larger |Δη| means softer
    jets (m_jj ≈ 2 p_T cosh(Δη/2)), so a loss that grows with jet p_T or mass prefers small
    |Δη|; and the jets' η is one of the AE inputs. The first dominates for a plain AE on
    QCD; a DisCo term against ``deta_jj`` at training (``dense_ae``
    ``disco_variable="deta_jj"``) reduces it at a cost in signal efficiency. The subleading
    jet's loss is no alternative here because the score is the *larger* of the two losses,
    which contains it. R_T (``"met_over_mt"``) is the other discriminating event variable of
    the CMS search; QCD has little MET, so its signal-like side (R_T > 0.15) holds few
    background events.
    """

    name = "svj"
    counts_nonfinite = True

    def __init__(
        self,
        model: str | Path,
        *,
        tag_threshold: float | str,
        min_pt: float = 200.0,
        max_eta: float = 2.4,
        min_mt: float = 0.0,
        max_deta: float | None = None,
        min_met_over_mt: float | None = None,
        systematic: str = "nominal",
        lumi_fb: float | None = None,
        scorer_options: dict[str, Any] | None = None,
        abcd_variable: AbcdVariable = "deta_jj",
        abcd_binning: AbcdBinning = "coarse",
        jets: str | None = None,
        met: str | None = None,
        variations: str | None = None,
        gen_jets: str = "GenJetAK8",
    ) -> None:
        super().__init__(systematic=systematic, lumi_fb=lumi_fb)
        if abcd_variable not in ABCD_VARIABLES:  # fail at construction, not in a worker
            raise UnknownNameError("ABCD variable", abcd_variable, ABCD_VARIABLES)
        self.abcd_variable = abcd_variable
        _check_binning(abcd_binning)
        self.abcd_binning = abcd_binning
        self.model = str(model)
        self.scorer = self.add_scorer("model", OnnxScorer(
            self.model, **{**(scorer_options or {}), **({"jets": jets} if jets else {})}))
        self.jets = self.scorer.jets or "FatJet"
        # the tag threshold: a number, or the working point JSON (correctionlib, constant or
        # binned in jet p_T) next to the model ("model") or at a path
        self.working_point: WorkingPoint | None = None
        if isinstance(tag_threshold, str) and not _is_number(tag_threshold):
            source = self.model if tag_threshold == "model" else tag_threshold
            self.working_point = read_working_point(source)
            tag_threshold = float("nan")
        # JES/JER variations filling the systematic axis next to the nominal: "treemaker"
        # (the variations the ntuple stores) or a correctionlib JERC JSON (NanoAOD)
        self.variations = variations
        self.gen_jets = gen_jets
        self.met = met  # None: MET, PFMET, PuppiMET (or TreeMaker's MET/METPhi)
        if variations not in (None, "treemaker") and not Path(variations).is_file():
            raise MissingFileError(f"variations: expected 'treemaker' or a correctionlib "
                                    f"JERC JSON file, {variations} does not exist")
        self.tag_threshold = float(tag_threshold)
        self.min_pt = float(min_pt)
        self.max_eta = float(max_eta)
        self.min_mt = float(min_mt)
        self.max_deta = None if max_deta is None else float(max_deta)
        self.min_met_over_mt = None if min_met_over_mt is None else float(min_met_over_mt)

    def required_fields(self, events: Any) -> dict[str, tuple[str, ...]]:
        met_needs = ({} if "METPhi" in events.fields and self.met is None else
                     {self.met or "MET|PFMET|PuppiMET": ("pt", "phi")})
        return {self.jets: ("pt", "eta", "phi", "mass"), **met_needs}

    def histograms(self) -> dict[str, Any]:
        return {"events": score_mass_histogram(),
                "abcd": abcd_histogram(self.abcd_variable, binning=self.abcd_binning),
                "jets": jet_score_histogram()}

    def cutflow_steps(self) -> list[str]:
        steps = ["all", f">=2 {self.jets} (pt>{self.min_pt:g}, |eta|<{self.max_eta:g})"]
        if self.max_deta is not None:
            steps.append(f"|deta_j1j2|<{self.max_deta:g}")
        steps.append(f"mT>={self.min_mt:g}")
        if self.min_met_over_mt is not None:
            steps.append(f"MET/mT>{self.min_met_over_mt:g}")
        return steps

    def check_lazy(self) -> None:
        refuse_lazy_flag(self.scorer)
        unsupported = [name for name, value in (
            ("variations", self.variations), ("met", self.met),
            ("tag_threshold from a working point", self.working_point)) if value is not None]
        if unsupported:
            raise UnsupportedError(
                f"svj processor on dask-awkward events: {', '.join(unsupported)} not "
                "supported on this path; use --executor iterative, futures or dask")

    def columns(self, events: ak.Array, *, scale: float | None) -> ak.Array:
        jets = with_mass(events[self.jets])
        genw = raw_weights(events, like=ak.num(jets, axis=1))
        weights = genw if scale is None else genw * scale
        met = events[self.met] if self.met else met_collection(events)
        varied = self._variations(events, jets)
        arrays = {"met_pt": met["pt"], "met_phi": met["phi"], "weight": weights}
        collections: dict[str | None, Any] = {None: jets}
        collections.update(varied)
        for label, collection in collections.items():
            for k in ("pt", "eta", "phi", "mass", *(("nominalIndex",) if label else ())):
                arrays[_key(label, k)] = collection[k]
        cols = eager_columns(self._select, arrays, labels=list(varied),
                             scores=_JetScores(self.scorer, events))
        cols["_genw"] = genw
        return ak.zip(cols, depth_limit=1)

    def _variations(self, events: Any, jets: Any) -> dict[str, Any]:
        if self.variations is None:
            return {}
        if self.variations == "treemaker":
            return treemaker_jet_variations(events, jets=self.jets)
        gen = events[self.gen_jets] if self.gen_jets in events.fields else None
        return correctionlib_jet_variations(jets, self.variations, gen_jets=gen)

    def _select(self, a: dict[str, Any], *, labels: list[str],
                scores: _JetScores) -> dict[str, Any]:
        """Selection, m_T, tags and fill columns of the nominal jets and of each variation,
        with numpy on the flat buffers (:func:`~coffea_ad.processors._common.eager_columns`,
        for every executor).

        The selection needs no score, so it runs first and the model scores only the jets
        the histograms use (the two leading jets of the selected events, per collection):
        every other jet's score would be computed and dropped."""
        pairs = {label: self._pairs(a, label) for label in (None, *labels)}
        chosen = scores.for_pairs(a, pairs)
        cols: dict[str, Any] = {}
        for label, p in pairs.items():
            cols.update(self._fill(p, chosen[label], label=label))
        cols["_cutflow"] = ak.zip({f"c{k}": ak.Array(m) for k, m in
                                   enumerate(pairs[None]["cutflow"])}, depth_limit=1)
        if scores.flagged is not None:
            cols["_nonfinite"] = ak.Array(scores.flagged)
        return cols

    def _pairs(self, a: dict[str, Any], label: str | None) -> dict[str, Any]:
        """The leading jet pair and event selection of one jet collection (no scores)."""
        counts = ak.to_numpy(ak.num(a[_key(label, "pt")], axis=1))
        flat = {k: ak.to_numpy(ak.flatten(a[_key(label, k)], axis=1))
                for k in ("pt", "eta", "phi", "mass")}
        good = (flat["pt"] > self.min_pt) & (abs(flat["eta"]) < self.max_eta)
        two_jets, first, second = leading_pair_index(counts, good)
        n_events = len(counts)

        def on_events(values: np.ndarray) -> np.ndarray:
            """Per-pair values -> per event (False where the event has no pair)."""
            out = np.zeros(n_events, dtype=bool)
            out[two_jets] = values
            return out

        lead = [{k: flat[k][i] for k in ("pt", "eta", "phi", "mass")} for i in (first, second)]
        met = {k: ak.to_numpy(a[f"met_{k}"])[two_jets] for k in ("pt", "phi")}
        mt = ak.to_numpy(transverse_mass(lead[0], lead[1], met))
        w = ak.to_numpy(a["weight"])[two_jets]
        # float64: |Δη| of float32 η would put events on the other side of a bin edge
        deta = np.abs(lead[0]["eta"].astype(np.float64) - lead[1]["eta"].astype(np.float64))
        met_pt = met["pt"].astype(np.float64)
        # m_T = 0 only for massless back-to-back jets without MET: R_T = 0 there
        positive = mt > 0
        ratio = np.where(positive, met_pt / np.where(positive, mt, 1.0), 0.0)

        cutflow = [np.ones(n_events, dtype=bool), two_jets]
        keep = mt >= self.min_mt
        if self.max_deta is not None:
            central = deta < self.max_deta
            cutflow.append(on_events(central))
            keep = keep & central
        cutflow.append(on_events(keep))
        if self.min_met_over_mt is not None:
            keep = keep & (ratio > self.min_met_over_mt)  # an event with m_T = 0 fails
            cutflow.append(on_events(keep))
        second_var = {"deta_jj": deta, "met_over_mt": ratio}[self.abcd_variable]
        return {"counts": counts, "flat": flat, "jets": np.stack([first, second], axis=1)[keep],
                "lead_pt": np.stack([lead[0]["pt"], lead[1]["pt"]], axis=1)[keep],
                "mt": mt[keep], "weight": w[keep], "second_var": second_var[keep],
                "selected": on_events(keep).astype(np.int64), "cutflow": cutflow}

    def _fill(self, p: dict[str, Any], sel_scores: np.ndarray, *,
              label: str | None) -> dict[str, Any]:
        """The fill columns of one collection's selected events, from the two leading jets'
        scores ``[n_selected, 2]``."""
        mt, w = p["mt"], p["weight"]
        if self.working_point is not None:
            passed = sel_scores.astype(np.float64) > self.working_point.threshold(
                p["lead_pt"].astype(np.float64))
        else:
            passed = sel_scores > self.tag_threshold
        ntag = passed.sum(axis=1, dtype=np.int64)
        max_score = sel_scores.max(axis=1)
        # one list per event: one row for a selected event, none for the others
        selected = p["selected"]
        tag = "" if label is None else f"|systematic={label}"
        cols = {
            f"events{tag}": event_rows({"category": ntag, "score": max_score, "mt": mt,
                                        "weight": w}, selected),
            f"abcd{tag}": event_rows({"score": max_score, self.abcd_variable: p["second_var"],
                                      "mt": mt, "weight": w}, selected),
        }
        if label is None:  # both leading jets of the selected events
            cols["jets"] = event_rows({"score": sel_scores.reshape(-1),
                                       "weight": np.repeat(w, 2)}, 2 * selected)
        return cols


def _key(label: str | None, name: str) -> str:
    """The name of a jet column of the nominal collection (``label=None``) or a variation in
    the arrays of :meth:`SVJProcessor._select`."""
    return name if label is None else f"{label}:{name}"


class _JetScores:
    """Scores of just the jets a selection uses (:meth:`SVJProcessor._select`).

    A dense model scores the nominal jets, and each variation's jets again with their varied
    p_T and mass in the feature table (substructure ratios are scale invariant, so the rest
    stays nominal). A constituent-list model's inputs are relative to the jet and kept
    nominal, so every collection takes the scores of the same nominal jets, computed once.
    Under ``nonfinite="flag"``, :attr:`flagged` counts per event the distinct nominal jets
    flagged among those scored (the jets the histograms use).
    """

    def __init__(self, scorer: OnnxScorer, events: Any) -> None:
        self.scorer = scorer
        self.events = events
        self.padded = any(spec.pad_length is not None for spec in scorer.contract.inputs)
        self.flag = scorer.nonfinite == "flag"
        self.flagged: np.ndarray | None = None
        self._table: Any = None

    def for_pairs(self, a: dict[str, Any],
                  pairs: dict[str | None, dict[str, Any]]) -> dict[str | None, np.ndarray]:
        """``label -> [n_selected, 2]`` scores of each collection's chosen jets."""
        if ak.backend(self.events) == "typetracer":
            # the projection pass: the model's input columns are read, nothing is run
            scored = ak.flatten(self.scorer.score_events(self.events), axis=1)
            dtype = ak.to_numpy(ak.typetracer.length_zero_if_typetracer(scored)).dtype
            return {label: np.zeros((0, 2), dtype=dtype) for label in pairs}
        nominal = pairs[None]
        n_events = len(nominal["counts"])
        start = np.zeros(n_events + 1, dtype=np.int64)
        np.cumsum(nominal["counts"], out=start[1:])
        # the nominal position of each collection's chosen jets
        positions: dict[str | None, np.ndarray] = {None: nominal["jets"]}
        for label, p in pairs.items():
            if label is not None:
                event = np.repeat(np.arange(n_events), p["counts"])[p["jets"]]
                index = ak.to_numpy(ak.flatten(a[_key(label, "nominalIndex")], axis=1))
                positions[label] = start[event] + index[p["jets"]]
        flagged: list[np.ndarray] = []
        out: dict[str | None, np.ndarray] = {}
        if self.padded:
            unique, inverse = np.unique(np.concatenate([q.reshape(-1) for q in
                                                        positions.values()]),
                                        return_inverse=True)
            scores = self._run(unique, None, flagged)[inverse]
            at = 0
            for label, q in positions.items():
                out[label] = scores[at:at + q.size].reshape(q.shape)
                at += q.size
        else:
            for label, q in positions.items():
                p = pairs[label]
                replace = None if label is None else {k: p["flat"][k][p["jets"].reshape(-1)]
                                                      for k in ("pt", "mass")}
                out[label] = self._run(q.reshape(-1), replace, flagged).reshape(q.shape)
        if self.flag:
            event_of = np.repeat(np.arange(n_events), nominal["counts"])
            bad = np.unique(np.concatenate(flagged)) if flagged else np.zeros(0, np.int64)
            self.flagged = np.bincount(event_of[bad], minlength=n_events).astype(np.int64)
        return out

    def _run(self, positions: np.ndarray, replace: dict[str, np.ndarray] | None,
             flagged: list[np.ndarray]) -> np.ndarray:
        """Scores of the nominal jets at ``positions`` (p_T and mass from ``replace``)."""
        from coffea_ad.inference.scorer import NONFINITE_MASK

        score = self.scorer.contract.score
        if self.padded:
            outs = (self.scorer.outputs_for_jets(self.events, positions) if self.flag
                    else {score: self.scorer.score_jets(self.events, positions)})
        else:
            if self._table is None:
                self._table = ak.flatten(self.scorer.features_from_events(self.events), axis=1)
            table = self._table[positions]
            for name, values in (replace or {}).items():
                if name in table.fields:
                    table = ak.with_field(table, values.astype(np.float32), name)
            raw = self.scorer.outputs(table) if self.flag else {score: self.scorer(table)}
            outs = {k: ak.to_numpy(v) for k, v in raw.items()}
        if self.flag:
            flagged.append(positions[np.asarray(outs[NONFINITE_MASK], dtype=bool)])
        return np.asarray(outs[score])
