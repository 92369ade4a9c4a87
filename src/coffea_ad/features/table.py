"""Feature registry and the per-jet feature table the models are trained and scored on.

:data:`JET_FEATURES` names every per-jet feature; :func:`jet_features` computes a requested list
of them as ``events * jets`` records (one float32 field per name, in the order asked), which is
what training and the ONNX scorer both call, so a model never sees features computed by
different code from the ones it was trained on. :func:`jet_table` flattens them to one row per
jet with the event keys, for inspection and for ``coffea-ad features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import awkward as ak
import numpy as np

from coffea_ad.errors import (
    InvalidArgumentError,
    MissingBranchError,
    NonFiniteInputError,
    UnknownNameError,
)
from coffea_ad.features._columnar import dispatch, first_present, is_typetracer
from coffea_ad.features.constituents import jet_constituents, link_table
from coffea_ad.features.ecf import BETAS, _energy_correlators, beta_label
from coffea_ad.features.substructure import MOMENT_NAMES, moments, table_moments

__all__ = ["BRANCH_EQUIVALENTS", "JET_FEATURES", "JetFeature", "jet_features", "jet_table"]

Source = Literal["jet", "constituents", "ecf"]


@dataclass(frozen=True)
class JetFeature:
    """One registry entry: the name models use, where it comes from, what it is.

    Attributes:
        name: the feature name (a key of :data:`JET_FEATURES`).
        source: ``"jet"`` (a jet branch or a ratio of branches), ``"constituents"`` (computed
            from the PF constituents) or ``"ecf"`` (energy correlation functions).
        description: definition and reference, with its defined value for degenerate jets.
    """

    name: str
    source: Source
    description: str


def _registry() -> dict[str, JetFeature]:
    entries = [
        JetFeature("pt", "jet", "jet p_T (branch, corrected)"),
        JetFeature("eta", "jet", "jet pseudorapidity (branch)"),
        JetFeature("phi", "jet", "jet azimuth (branch)"),
        JetFeature("mass", "jet", "jet mass (branch)"),
        JetFeature("msoftdrop", "jet", "soft-drop mass (branch; NanoAOD writes -1 if it failed)"),
        JetFeature("log_pt", "jet", "ln(p_T / 1 GeV) of the pt branch (the kinematic condition "
                   "of p_T-conditioned models); 0 if p_T <= 1 GeV"),
        JetFeature("rho", "jet", "ρ = ln(m_SD² / p_T²) from the msoftdrop and pt branches, the "
                   "scale-invariant jet mass (CMS N2DDT convention); m_SD below 1 GeV (or the "
                   "failed-soft-drop -1) counts as 1 GeV"),
        JetFeature("ptd", "constituents", "sqrt(Σp_T²)/Σp_T, CMS-PAS-JME-13-002; 0 if no "
                   "constituents"),
        JetFeature("axis_major", "constituents", "sqrt of the larger eigenvalue of the p_T²-"
                   "weighted η–φ covariance, CMS-PAS-JME-13-002; 0 below 2 constituents"),
        JetFeature("axis_minor", "constituents", "sqrt of the smaller eigenvalue of the same "
                   "matrix; 0 below 2 constituents"),
        JetFeature("girth", "constituents", "Σ p_T ΔR / Σ p_T from the jet axis; 0 if none"),
        JetFeature("lha", "constituents", "λ¹₀.₅ = Σ z (ΔR/0.8)^0.5, arXiv:1408.3122; 0 if none"),
        JetFeature("efp1", "constituents", "Σ_ij z_i z_j θ_ij (β=1), arXiv:1712.07124 = 2 e2_b1"),
    ]
    for beta in BETAS:
        b = beta_label(beta)
        entries += [
            JetFeature(f"e2_b{b}", "ecf", f"Σ_{{i<j}} z z R^{b}, arXiv:1305.0007; 0 below 2"),
            JetFeature(f"e3_b{b}", "ecf", f"Σ_{{i<j<k}} z z z (RRR)^{b}, arXiv:1305.0007; 0 "
                       "below 3"),
            JetFeature(f"c2_b{b}", "ecf", f"e3/e2² at β={b}, arXiv:1305.0007; 0 if e2 = 0"),
            JetFeature(f"d2_b{b}", "ecf", f"e3/e2³ at β={b}, arXiv:1409.6298; 0 if e2 = 0"),
        ]
    entries += [
        JetFeature("tau21", "jet", "τ2/τ1 N-subjettiness ratio from the tau branches, "
                   "arXiv:1011.2268; 0 if τ1 ≤ 0"),
        JetFeature("tau32", "jet", "τ3/τ2 from the tau branches; 0 if τ2 ≤ 0"),
        JetFeature("n_constituents", "constituents", "number of linked PF candidates"),
    ]
    return {e.name: e for e in entries}


#: Every per-jet feature :func:`jet_features` can compute, by name, in a stable order.
JET_FEATURES: dict[str, JetFeature] = _registry()

#: Branch equivalents of features, per jet collection of the CMS formats: ``{collection:
#: {feature: (source, definitional difference)}}``, where ``source`` is ``"branch:FIELD"`` or
#: ``"branch:NUM/DEN"`` (a ratio, 0 where ``DEN <= 0``). A model contract names the source of
#: each feature per collection (``ModelContract.sources``); these are the ones the shipped
#: branch models use, and the differences a user should know before mixing sources.
BRANCH_EQUIVALENTS: dict[str, dict[str, tuple[str, str]]] = {
    "JetsAK8": {  # TreeMaker (CMSSW-computed)
        "pt": ("branch:pt", "same (JEC and JER applied)"),
        "eta": ("branch:eta", "same"),
        "phi": ("branch:phi", "same"),
        "mass": ("branch:mass", "from the stored (p_T, η, φ, E) vector; same as NanoAOD mass"),
        "msoftdrop": ("branch:softDropMass", ("CMSSW soft drop (z_cut 0.1, β 0) on PUPPI "
                      "constituents, like NanoAOD msoftdrop")),
        "ptd": ("branch:ptD", ("CMSSW p_TD sums only candidates passing track-quality cuts "
                "(charged from the PV, neutrals above a p_T floor); ours sums every valid "
                "constituent")),
        "axis_major": ("branch:axismajor", ("CMSSW uses the same candidate cuts as its p_TD "
                       "and the p_T²-weighted η–φ moments about the jet axis")),
        "axis_minor": ("branch:axisminor", "as axis_major"),
        "girth": ("branch:girth", ("CMSSW: Σ p_T ΔR / p_T(jet) over all daughters; ours "
                  "divides by Σ p_T of the constituents (equal for a PUPPI jet up to JEC)")),
        "tau21": ("branch:NsubjettinessTau2/NsubjettinessTau1", ("same N-subjettiness (β=1, "
                  "one-pass kT axes)")),
        "tau32": ("branch:NsubjettinessTau3/NsubjettinessTau2", "as tau21"),
        "n_constituents": ("branch:multiplicity", "all PF daughters, not PUPPI-weighted"),
    },
    "ScoutingFatJet": {  # Run-3 scouting NanoAOD
        "mass": ("branch:mass", ("AK8 jets of the HLT scouting PF candidates (PUPPI at HLT), "
                 "no offline JEC: same definition, other reconstruction")),
        "msoftdrop": ("branch:msoftdrop", "as mass"),
        "tau21": ("branch:tau2/tau1", "as mass"),
        "tau32": ("branch:tau3/tau2", "as mass"),
    },
    "FatJet": {  # NanoAOD
        "tau21": ("branch:tau2/tau1", "the registry definition itself"),
        "tau32": ("branch:tau3/tau2", "the registry definition itself"),
        "n_constituents": ("branch:nConstituents", ("all PUPPI daughters stored by CMSSW; "
                           "PFNano links may hold fewer (candidate p_T thresholds)")),
    },
}

_BRANCH_FEATURES = ("pt", "eta", "phi", "mass", "msoftdrop")
_CONSTITUENT_FEATURES = {"ptd", "axis_major", "axis_minor", "girth", "lha", "efp1",
                         "n_constituents"}


def jet_features(
    events: ak.Array,
    names: Sequence[str],
    *,
    jets: str = "FatJet",
    nonfinite: Literal["raise", "zero"] = "raise",
    puppi: bool = True,
    sources: Mapping[str, str] | None = None,
) -> ak.Array:
    """Compute the named per-jet features (see :data:`JET_FEATURES` for their definitions).

    Args:
        events: NanoEvents (eager/virtual, or dask-awkward from ``mode="dask"``).
        names: feature names, e.g. ``["eta", "phi", "mass", "ptd", "axis_major",
            "axis_minor"]``; the output fields follow this order.
        jets: jet collection (``"FatJet"``, ``"Jet"``); constituent features need the PFNano
            link table ``{jets}PFCands`` (or ``{jets}PFCand``).
        nonfinite: what to do with NaN/inf found in jet branches (``pt, eta, phi, mass,
            msoftdrop, tau1..3``): ``"raise"`` :class:`~coffea_ad.errors.NonFiniteInputError`
            (default), or ``"zero"`` to write 0. Constituent-level features never produce
            NaN/inf: bad constituents are ignored and degenerate jets get the defined values.
        puppi: constituent features use PUPPI-weighted candidates when the file carries
            ``PFCands_puppiWeight`` (see :func:`~coffea_ad.features.jet_constituents`);
            ``False`` uses the raw candidates.
        sources: where features come from, by name: ``"branch:FIELD"`` reads the field of
            the jet collection (``"branch:NUM/DEN"``: their ratio, 0 where ``DEN <= 0``),
            ``"constituents"`` or absent: the registry definition. This is how a model on
            TreeMaker or plain NanoAOD branches is fed (see :data:`BRANCH_EQUIVALENTS`).

    Returns:
        ``events * jets * {name: float32, ...}`` aligned with ``events[jets]``.

    Raises:
        UnknownNameError: a name not in :data:`JET_FEATURES`.
        MissingBranchError: a branch the requested features need is not in the events.
        NonFiniteInputError: NaN/inf in a jet branch under ``nonfinite="raise"``.
    """
    names = list(names)
    for name in names:
        if name not in JET_FEATURES:
            raise UnknownNameError("jet feature", name, JET_FEATURES)
    for name, source in (sources or {}).items():
        if source != "constituents" and not (source.startswith("branch:") and source[7:]):
            raise InvalidArgumentError(f"source of jet feature {name!r}: expected 'constituents' or "
                             f"'branch:FIELD[/FIELD]', given {source!r}")
    if nonfinite not in ("raise", "zero"):
        raise InvalidArgumentError(f"nonfinite must be 'raise' or 'zero', got {nonfinite!r}")
    return dispatch(_jet_features, events, label="jet-features", names=tuple(names), jets=jets,
                    nonfinite=nonfinite, puppi=puppi,
                    sources=tuple(sorted((sources or {}).items())))


_P4_PROPERTIES = ("pt", "eta", "phi", "mass")


def _branch(collection: Any, name: str, jets: str, feature: str) -> Any:
    if name not in collection.fields and name in _P4_PROPERTIES and hasattr(collection, name):
        # TreeMaker stores (p_T, η, φ, E) vectors: coffea's behaviour gives the mass
        return getattr(collection, name)
    if name not in collection.fields:
        raise MissingBranchError(f"{jets}_{name}", [f"{jets}_{f}" for f in collection.fields],
                                 where="events", needed_for=f"the jet feature {feature!r}")
    return collection[name]


def _safe_ratio(num: Any, den: Any) -> Any:
    num, den = ak.values_astype(num, np.float64), ak.values_astype(den, np.float64)
    return ak.where(den > 0, num / ak.where(den > 0, den, 1.0), 0.0)


def _check_finite(values: Any, name: str, jets: str, nonfinite: str) -> Any:
    if is_typetracer(values):
        return values
    if nonfinite == "raise":
        # one numpy pass over the flat buffer (no awkward broadcasting for a check that
        # almost always passes); option-typed values keep the awkward form
        try:
            flat = ak.to_numpy(ak.flatten(values, axis=None))
        except (TypeError, ValueError):
            flat = None
        if flat is not None and np.isfinite(flat).all():
            return values
    finite = np.isfinite(values)
    if nonfinite == "zero":
        return ak.where(finite, values, 0.0)
    if not ak.all(finite, axis=None):
        n_bad = int(ak.sum(~finite, axis=None))
        raise NonFiniteInputError(
            f"jet feature {name!r} of {jets}: expected finite values, found {n_bad} NaN/inf "
            "jet(s); pass nonfinite='zero' to write 0 for them"
        )
    return values


def _jet_features(events: ak.Array, *, names: tuple[str, ...], jets: str,
                  nonfinite: str, puppi: bool = True,
                  sources: tuple[tuple[str, str], ...] = ()) -> ak.Array:
    first_present(events, (jets,), where="events", needed_for="jet features")
    collection = events[jets]
    wanted = set(names)
    columns: dict[str, Any] = {}
    for name, source in sources:
        if name not in wanted or not source.startswith("branch:"):
            continue
        parts = source[len("branch:"):].split("/")
        if len(parts) == 2:
            value = _safe_ratio(_branch(collection, parts[0], jets, name),
                                _branch(collection, parts[1], jets, name))
        else:
            value = _branch(collection, parts[0], jets, name)
        columns[name] = _check_finite(value, name, jets, nonfinite)
    wanted -= set(columns)
    names_left = [n for n in names if n in wanted]

    for name in wanted & set(_BRANCH_FEATURES):
        columns[name] = _branch(collection, name, jets, name)
    if "log_pt" in wanted:
        pt = ak.values_astype(_branch(collection, "pt", jets, "log_pt"), np.float64)
        columns["log_pt"] = np.log(ak.where(pt > 1.0, pt, 1.0))
    if "rho" in wanted:
        pt = ak.values_astype(_branch(collection, "pt", jets, "rho"), np.float64)
        msd = ak.values_astype(_branch(collection, "msoftdrop", jets, "rho"), np.float64)
        # both clipped at 1 GeV so that a failed soft drop (-1) or a zero-p_T jet gives a
        # finite, defined value instead of NaN/-inf
        columns["rho"] = 2.0 * (np.log(ak.where(msd > 1.0, msd, 1.0))
                                - np.log(ak.where(pt > 1.0, pt, 1.0)))
    if "tau21" in wanted:
        columns["tau21"] = _safe_ratio(_branch(collection, "tau2", jets, "tau21"),
                                       _branch(collection, "tau1", jets, "tau21"))
    if "tau32" in wanted:
        columns["tau32"] = _safe_ratio(_branch(collection, "tau3", jets, "tau32"),
                                       _branch(collection, "tau2", jets, "tau32"))
    for name in wanted & {"pt", "eta", "phi", "mass", "msoftdrop", "tau21", "tau32"}:
        columns[name] = _check_finite(columns[name], name, jets, nonfinite)

    ecf_names = [n for n in names_left if JET_FEATURES[n].source == "ecf"]
    if (wanted & _CONSTITUENT_FEATURES and not ecf_names and "efp1" not in wanted
            and not is_typetracer(events)):
        # eager events, η–φ shapes and counts only: straight from the flat link table, the
        # same numbers without building grouped constituent records (most of this stage's
        # time in a chain)
        columns.update(_linked_features(events, collection, wanted, jets=jets, puppi=puppi))
    elif wanted & _CONSTITUENT_FEATURES or ecf_names:
        # the ECFs use the rapidity (candidate mass); the η–φ shapes do not: carrying only
        # what is used keeps the PUPPI scaling from reading the mass branch for nothing
        cand_fields = ("pt", "eta", "phi", "mass") if ecf_names or "efp1" in wanted else (
            "pt", "eta", "phi")
        constituents = jet_constituents(events, jets=jets, puppi=puppi, fields=cand_fields)
        if "n_constituents" in wanted:
            columns["n_constituents"] = ak.num(constituents, axis=2)
        shape_names = wanted & {"ptd", "axis_major", "axis_minor", "girth", "lha"}
        if shape_names:
            axis = None
            if shape_names & {"girth", "lha"}:
                axis = ak.zip({f: _branch(collection, f, jets, "girth/lha")
                               for f in ("eta", "phi")})
            values = moments(constituents, axis, radius=_radius(jets))
            for name in shape_names:
                columns[name] = values[name]
        betas = sorted({float(n.split("_b")[1]) for n in ecf_names} | (
            {1.0} if "efp1" in wanted else set()))
        if betas:
            ecf = _energy_correlators(constituents, betas=tuple(betas), max_constituents=None)
            for name in ecf_names:
                columns[name] = ecf[name]
            if "efp1" in wanted:
                columns["efp1"] = 2.0 * ak.values_astype(ecf["e2_b1"], np.float64)
    # without_parameters: branch docstrings from the file are not part of a feature's type
    return ak.zip({n: ak.without_parameters(ak.values_astype(columns[n], np.float32))
                   for n in names}, depth_limit=2)


def _radius(jets: str) -> float:
    """AK8 (FatJet) or AK4 radius, for the LHA normalisation."""
    return 0.8 if jets.startswith("FatJet") or "AK8" in jets else 0.4


def _linked_features(events: ak.Array, collection: Any, wanted: set[str], *, jets: str,
                     puppi: bool) -> dict[str, Any]:
    """n_constituents and the η–φ shapes of eager events from the flat link table."""
    table = link_table(events, jets=jets)

    def per_jet(values: np.ndarray) -> ak.Array:
        return ak.Array(ak.contents.ListOffsetArray(
            ak.index.Index64(table.jet_offsets), ak.contents.NumpyArray(values)))

    columns: dict[str, Any] = {}
    shape_names = wanted & set(MOMENT_NAMES)
    if not shape_names:
        columns["n_constituents"] = per_jet(table.links().counts)
        return columns
    axis_eta = axis_phi = None
    if shape_names & {"girth", "lha"}:
        axis_eta, axis_phi = (ak.to_numpy(ak.flatten(_branch(collection, f, jets, "girth/lha"),
                                                     axis=1))
                              for f in ("eta", "phi"))
    values, counts = table_moments(table, axis_eta, axis_phi, radius=_radius(jets), puppi=puppi)
    if "n_constituents" in wanted:
        columns["n_constituents"] = per_jet(counts)
    for k, name in enumerate(MOMENT_NAMES):
        if name in shape_names:
            # float32 here, as the grouped path's moments() returns them
            columns[name] = per_jet(values[:, k].astype(np.float32))
    return columns


def jet_table(
    events: ak.Array,
    names: Sequence[str] | None = None,
    *,
    jets: str = "FatJet",
    nonfinite: Literal["raise", "zero"] = "raise",
    puppi: bool = True,
) -> ak.Array:
    """One row per jet: event keys, jet index and the named features (all by default).

    Args:
        events: NanoEvents (eager or virtual).
        names: feature names (default: every name in :data:`JET_FEATURES`).
        jets: jet collection.
        nonfinite: as in :func:`jet_features`.
        puppi: as in :func:`jet_features`.

    Returns:
        ``n_jets * {run, luminosityBlock, event, jet_index, <features>}``: the keys as in the
        file (those present), ``jet_index`` the position of the jet in ``events[jets]`` (int32),
        features float32.
    """
    names = list(JET_FEATURES) if names is None else list(names)
    feats = jet_features(events, names, jets=jets, nonfinite=nonfinite, puppi=puppi)
    index = ak.local_index(feats, axis=1)
    out: dict[str, Any] = {}
    for key in ("run", "luminosityBlock", "event"):
        if key in events.fields:
            keys = ak.without_parameters(events[key])
            out[key] = ak.flatten(ak.broadcast_arrays(keys, index)[0], axis=1)
    out["jet_index"] = ak.values_astype(ak.flatten(index, axis=1), np.int32)
    for name in names:
        out[name] = ak.flatten(feats[name], axis=1)
    return ak.zip(out, depth_limit=1)
