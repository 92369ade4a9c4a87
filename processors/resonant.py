"""Resonant anomaly detection, LHC-Olympics style: a conditional VAE given m_jj, its sampled
background template in the signal region, and the arrays for a data-vs-template classifier.

The cVAE of ``training/cvae.py`` is trained on the m_jj sidebands with the dijet substructure
(m_j, τ21, τ32 of both leading jets) as inputs and m_jj as the condition; its decoder, exported
as ``NAME_sampler.onnx``, turns standard-normal noise and an m_jj value into a background
feature vector. In the signal region (SR, m_jj ∈ [3.3, 3.7] TeV by default) this gives a
background template; a classifier of data versus template then finds a localized excess
(CATHODE, Hallin et al., arXiv:2109.00546, with a cVAE as the generative model), and the cVAE
score itself is an anomaly score whose SIC = TPR/√FPR the report draws per signal dataset.

Thin over :mod:`coffea_ad.features` (jet features, m_jj), :mod:`coffea_ad.inference` (cVAE
score and sampler through :class:`~coffea_ad.inference.OnnxScorer`) and :mod:`coffea_ad.histos`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from coffea_ad.analysis import AnalysisProcessor
from coffea_ad.errors import InvalidArgumentError, ModelContractError
from coffea_ad.features import dijet_mass, jet_features
from coffea_ad.histos import score_mass_histogram
from coffea_ad.inference import OnnxScorer
from coffea_ad.inference.noise import event_normals
from coffea_ad.processors._common import per_event, raw_weights

__all__ = ["DEFAULT_FEATURE_BINS", "EVENT_ID", "REGIONS", "ResonantProcessor"]

#: The event identifiers the template noise is a function of (:func:`event_normals`).
EVENT_ID = ("run", "luminosityBlock", "event")

#: m_jj region index -> name (the ``category`` axis of the event histogram).
REGIONS: dict[int, str] = {0: "low sideband", 1: "signal region", 2: "high sideband"}

#: Feature histogram binning (bins, low, high) by jet-feature name; others get (50, 0, 1000).
DEFAULT_FEATURE_BINS: dict[str, tuple[int, float, float]] = {
    "mass": (50, 0.0, 1000.0),
    "msoftdrop": (50, 0.0, 1000.0),
    "tau21": (50, 0.0, 1.0),
    "tau32": (50, 0.0, 1.0),
}


def _split_feature(name: str) -> tuple[str, int]:
    """``"tau21_j2"`` -> ``("tau21", 1)`` (jet feature, 0-based jet index)."""
    base, sep, idx = name.rpartition("_j")
    if not sep or idx not in ("1", "2"):
        msg = (f"resonant: expected cVAE features named FEATURE_j1 / FEATURE_j2 (as "
               f"training/cvae.py writes them), found {name!r}")
        raise ModelContractError(msg)
    return base, int(idx) - 1


class ResonantProcessor(AnalysisProcessor):
    """cVAE scores in the m_jj signal region and sidebands, and a sampled background template.

    Args:
        model: the cVAE ONNX model (event level, inputs ``features`` named ``NAME_j1``,
            ``NAME_j2`` and ``condition`` = ``[mjj]``), as written by ``training/cvae.py``.
        sampler: its decoder ``NAME_sampler.onnx`` (inputs ``noise``: standard-normal
            columns, as many as its contract names, and ``condition``; output ``features``);
            ``None``: the file next to ``model`` if it exists, else no template.
        signal_region: ``(low, high)`` m_jj of the signal region (GeV), or the string
            ``"low:high"`` (what ``coffea-ad run --set signal_region=3300:3700`` passes).
        min_pt: both leading jets above it (GeV); the same selection as the training rows
            (:func:`coffea_ad.nn.data.dijet_rows`: the two p_T-leading jets, no η cut).
        jets: jet collection.
        samples_per_event: template events drawn per selected event (each weighted
            ``w / samples_per_event``), at the event's own m_jj.
        seed: template seed: the noise of each event is
            :func:`coffea_ad.inference.noise.event_normals` of ``(seed, run,
            luminosityBlock, event)``, so the template is the same on every executor and
            for every chunking.
        mjj_edges: m_jj bin edges of the event histogram (GeV).
        feature_bins: feature histogram binning by jet-feature name (see
            :data:`DEFAULT_FEATURE_BINS`).
        keep_arrays: also return the signal-region rows (features, m_jj, weight, score) of
            data and template as ``coffea`` column accumulators, the classifier's inputs
            (chunked executors only: on dask-awkward events, whose outputs are histograms,
            they are not made).
        systematic: label of the ``systematic`` axis bin this run fills.
        lumi_fb: weight events to yields at this luminosity (fb⁻¹) from the dataset
            metadata ``xsec`` and ``sumw``; ``None``: generator weights (1 for data).
        scorer_options: passed to both :class:`~coffea_ad.inference.OnnxScorer`.

    Output: ``hists["events"]`` (dataset × systematic × category × score × mjj with
    category = m_jj region, :data:`REGIONS`), ``hists["feature_NAME"]`` per model feature
    (dataset × source ``data``/``cvae`` × region × value: data and template compared in
    every region; the sidebands, where the cVAE was trained, validate the template),
    ``arrays[dataset]`` (with ``keep_arrays``: ``data_x``, ``data_mjj``, ``data_weight``,
    ``data_score``, ``cvae_x``, ``cvae_mjj``, ``cvae_weight``, signal region only),
    ``cutflow``, ``entries``, ``sumw``, ``provider``.
    """

    name = "resonant"

    def __init__(
        self,
        model: str | Path,
        *,
        sampler: str | Path | None = None,
        signal_region: tuple[float, float] | Sequence[float] | str = (3300.0, 3700.0),
        min_pt: float = 300.0,
        jets: str = "FatJet",
        samples_per_event: int = 1,
        seed: int = 0,
        mjj_edges: Sequence[float] | None = None,
        feature_bins: Mapping[str, tuple[int, float, float]] | None = None,
        keep_arrays: bool = True,
        systematic: str = "nominal",
        lumi_fb: float | None = None,
        scorer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(systematic=systematic, lumi_fb=lumi_fb)
        if isinstance(signal_region, str):  # from the CLI: --set signal_region=3300:3700
            signal_region = [x for x in signal_region.replace(":", ",").split(",") if x]
        if len(signal_region) != 2:
            raise InvalidArgumentError(f"signal_region: expected (low, high), found {signal_region!r}")
        low, high = (float(x) for x in signal_region)
        if not low < high:
            raise InvalidArgumentError(f"signal_region: expected (low, high) with low < high, found "
                             f"{tuple(signal_region)}")
        if samples_per_event < 1:
            raise InvalidArgumentError(f"samples_per_event must be >= 1, found {samples_per_event}")
        self.model = str(model)
        self.scorer = self.add_scorer("model", OnnxScorer(self.model, **(scorer_options or {})))
        contract = self.scorer.contract
        if sorted(contract.input_names) != ["condition", "features"]:
            msg = (f"resonant: expected a cVAE with inputs 'features' and 'condition' (from "
                   f"training/cvae.py), found inputs {contract.input_names} in {self.model}")
            raise ModelContractError(msg)
        self.features = list(contract.input("features").features)
        parts = [_split_feature(n) for n in self.features]
        self.jet_feature_names = list(dict.fromkeys(base for base, _ in parts))
        self._columns = [(base, idx) for base, idx in parts]
        if sampler is None:
            default = Path(self.model).with_name(Path(self.model).stem + "_sampler.onnx")
            sampler = default if default.is_file() else None
        self.sampler_path = None if sampler is None else str(sampler)
        self.sampler = (None if sampler is None
                        else self.add_scorer("sampler",
                                             OnnxScorer(sampler, **(scorer_options or {}))))
        # standard-normal columns the sampler takes per row (latent z, then the observation
        # noise of each feature in the current recipe): read from its contract, not assumed
        self.noise_width = (0 if self.sampler is None
                            else int(self.sampler.contract.input("noise").shape[0]))
        self.signal_region = (low, high)
        self.min_pt = float(min_pt)
        self.jets = jets
        self.samples_per_event = int(samples_per_event)
        self.seed = int(seed)
        self.mjj_edges = ([float(e) for e in mjj_edges] if mjj_edges is not None
                          else [float(x) for x in np.arange(0.0, 8001.0, 100.0)])
        self.feature_bins = {**DEFAULT_FEATURE_BINS, **(feature_bins or {})}
        self.keep_arrays = bool(keep_arrays)

    def region(self, mjj: np.ndarray) -> np.ndarray:
        """Region index per event: 0 below the signal region, 1 inside (edges included, as
        in the training recipe), 2 above."""
        low, high = self.signal_region
        return np.where(mjj < low, 0, np.where(mjj <= high, 1, 2)).astype(np.intp)

    def _feature_histogram(self, name: str) -> hist.Hist:
        base, _ = _split_feature(name)
        bins, lo, hi = self.feature_bins.get(base, (50, 0.0, 1000.0))
        return hist.Hist(
            hist.axis.StrCategory([], growth=True, name="dataset", label="Dataset"),
            hist.axis.StrCategory(["data", "cvae"], name="source", label="Source"),
            hist.axis.IntCategory(list(REGIONS), name="region", label="m_jj region"),
            hist.axis.Regular(bins, lo, hi, name="value", label=name),
            storage=hist.storage.Weight(),
        )

    def required_fields(self, events: Any) -> dict[str, tuple[str, ...]]:
        needs: dict[str, tuple[str, ...]] = {self.jets: ("pt", "eta", "phi", "mass")}
        if self.sampler is not None:  # the template's random stream is seeded per event
            needs.update({name: () for name in EVENT_ID})
        return needs

    def histograms(self) -> dict[str, Any]:
        hists: dict[str, Any] = {"events": score_mass_histogram(
            mass="mjj", mass_label=r"$m_{jj}$ [GeV]", mass_edges=self.mjj_edges,
            score_label="cVAE score", categories=list(REGIONS),
            category_label="m_jj region (0 low SB, 1 SR, 2 high SB)")}
        for name in self.features:
            hists[f"feature_{name}"] = self._feature_histogram(name)
        return hists

    def cutflow_steps(self) -> list[str]:
        return ["all", f">=2 {self.jets} (pt>{self.min_pt:g})",
                f"SR {self.signal_region[0]:g}<=mjj<={self.signal_region[1]:g}"]

    def columns(self, events: ak.Array, *, scale: float | None) -> ak.Array:
        """Selection, features, cVAE score and template rows; the model and its sampler run on
        the chunk's (partition's) numpy values (:meth:`_partition`)."""
        all_jets = events[self.jets]
        genw = raw_weights(events, like=ak.num(all_jets, axis=1))
        weights = genw if scale is None else genw * scale
        # NanoAOD jets are p_T-ordered: the second jet passing min_pt means both do
        second_pt = ak.fill_none(ak.pad_none(all_jets.pt, 2, axis=1)[:, 1], 0.0)
        has_pair = second_pt > self.min_pt
        sel = events[has_pair]
        jets = sel[self.jets]
        feats = jet_features(sel, self.jet_feature_names, jets=self.jets)
        x = [ak.values_astype(feats[base][:, j], np.float32) for base, j in self._columns]
        mjj = ak.values_astype(dijet_mass(jets[:, 0], jets[:, 1]), np.float64)
        ids = [sel[name] for name in EVENT_ID] if self.sampler is not None else []
        rec = self._partition(*x, mjj, *ids)
        region, w, k = rec.region, weights[has_pair], self.samples_per_event
        cols: dict[str, Any] = {"events": ak.zip({"category": region, "score": rec.score,
                                                  "mjj": mjj, "weight": w})}
        for j, name in enumerate(self.features):
            cols[f"feature_{name}|source=data"] = ak.zip({"region": region, "value": x[j],
                                                          "weight": w})
            if self.sampler is not None:  # k template rows per event, each weighted w / k
                cols[f"feature_{name}|source=cvae"] = ak.zip(
                    {"region": region, "value": rec[f"t{j}"], "weight": w / k})
        if self.keep_arrays:
            cols["_rows"] = ak.zip({"mjj": mjj, "weight": w, "region": region,
                                    "score": rec.score,
                                    **{f"x{j}": c for j, c in enumerate(x)},
                                    **{f"t{j}": rec[f"t{j}"] for j in range(len(x))}},
                                   depth_limit=1)
        cols = {key: per_event(value, has_pair) for key, value in cols.items()}
        cols["_cutflow"] = ak.zip({"c0": ak.ones_like(has_pair), "c1": has_pair,
                                   "c2": per_event(region == 1, has_pair)}, depth_limit=1)
        cols["_genw"] = genw
        return ak.zip(cols, depth_limit=1)

    def extra_output(self, columns: ak.Array, dataset: str) -> dict[str, Any]:
        """With ``keep_arrays``: the signal-region rows of data and template (column
        accumulators, Runner executors only)."""
        if not self.keep_arrays:
            return {}
        rows = ak.flatten(columns["_rows"], axis=1)
        n_f, k = len(self.features), self.samples_per_event
        sr = ak.to_numpy(rows.region) == 1
        mjj, w = ak.to_numpy(rows.mjj)[sr], ak.to_numpy(rows.weight)[sr]
        acc = processor.column_accumulator
        data_x = np.zeros((int(sr.sum()), n_f), np.float32)
        cvae_x = np.zeros((0, n_f), np.float32)
        for j in range(n_f):
            data_x[:, j] = ak.to_numpy(rows[f"x{j}"])[sr]
        if self.sampler is not None:
            cvae_x = np.zeros((int(sr.sum()) * k, n_f), np.float32)
            for j in range(n_f):  # event-major, the k template rows of each event in a row
                cvae_x[:, j] = ak.to_numpy(ak.flatten(rows[f"t{j}"][sr]))
        has_template = self.sampler is not None
        return {"arrays": {dataset: {
            "data_x": acc(data_x),
            "data_mjj": acc(mjj),
            "data_weight": acc(w),
            "data_score": acc(ak.to_numpy(rows.score)[sr]),
            "cvae_x": acc(cvae_x),
            "cvae_mjj": acc(np.repeat(mjj, k) if has_template else np.zeros(0)),
            "cvae_weight": acc(np.repeat(w, k) / k if has_template else np.zeros(0)),
        }}}

    def _rows(self, x: np.ndarray, mjj: np.ndarray, ids: list[np.ndarray] | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Region, cVAE score and template rows (``samples_per_event`` per event, event-major)
        of selected events: numpy in, numpy out, on a chunk or on a dask-awkward partition."""
        region = self.region(mjj)
        cond = mjj.astype(np.float32)[:, None]
        score = np.asarray(self.scorer({"features": x, "condition": cond}), dtype=np.float64)
        k = self.samples_per_event
        sampled = np.zeros((0, len(self.features)), dtype=np.float32)
        if self.sampler is not None and ids is not None:
            noise = event_normals(self.seed, *ids, width=self.noise_width, copies=k)
            s_cond = np.repeat(cond, k, axis=0)
            sampled = np.asarray(self.sampler({"noise": noise, "condition": s_cond}),
                                 dtype=np.float32).reshape(len(mjj) * k, len(self.features))
        return region, score, sampled

    def _partition(self, *columns: ak.Array) -> ak.Array:
        """:meth:`_rows` of one chunk or dask-awkward partition: feature columns, m_jj, then the event
        ids; returns ``{region, score, t0 .. t(F-1)}`` with ``t`` the template, ``[n, k]``."""
        n_f, k = len(self.features), self.samples_per_event
        if ak.backend(*columns) == "typetracer":  # dask-awkward tracing which columns are read
            for c in columns:
                ak.typetracer.touch_data(c)
            empty = self._partition_record(np.zeros(0, np.intp), np.zeros(0),
                                           np.zeros((0, n_f), np.float32), k)
            return ak.Array(empty.layout.to_typetracer(forget_length=True))
        x = np.stack([ak.to_numpy(c).astype(np.float32) for c in columns[:n_f]], axis=1) \
            if len(columns[n_f]) else np.zeros((0, n_f), np.float32)
        mjj = ak.to_numpy(columns[n_f]).astype(np.float64)
        ids = [ak.to_numpy(c) for c in columns[n_f + 1:]] or None
        region, score, sampled = self._rows(x.reshape(len(mjj), n_f), mjj, ids)
        if self.sampler is None:
            sampled = np.zeros((len(mjj) * k, n_f), np.float32)
        return self._partition_record(region, score, sampled, k)

    @staticmethod
    def _partition_record(region: np.ndarray, score: np.ndarray, sampled: np.ndarray,
                          k: int) -> ak.Array:
        n = len(region)
        t = sampled.reshape(n, k, sampled.shape[1])
        fields = {"region": region.astype(np.int64), "score": score.astype(np.float64)}
        for j in range(sampled.shape[1]):
            # var-length lists (not regular): awkward broadcasts those left-aligned against the
            # per-event weight and region, as the template needs
            fields[f"t{j}"] = ak.from_regular(ak.Array(np.ascontiguousarray(t[:, :, j])), axis=1)
        return ak.zip(fields, depth_limit=1)
