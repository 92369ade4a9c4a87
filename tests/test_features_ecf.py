"""Energy correlation functions against fastjet-contrib's EnergyCorrelator and formula loops.

fastjet (the scikit-hep ``fastjet`` package) exposes contrib's EnergyCorrelator through
``ClusterSequence.exclusive_jets_energy_correlator``: each jet's constituents are clustered
back into exactly one exclusive jet (all of them), on which the correlator is evaluated with
the ``pt_R`` measure. References run on the real pfnano.root jets and on generated jets.
"""

from __future__ import annotations

import itertools
import math
import warnings

import awkward as ak
import numpy as np
import pytest

from coffea_ad.features import efp1, energy_correlators, jet_constituents

BETAS = (0.5, 1.0, 2.0)


@pytest.fixture(scope="module")
def real_constituents(pfnano_file):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cross-references absent in the file
        events = NanoEventsFactory.from_root(
            {str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual"
        ).events()
    return jet_constituents(events)


def generated_constituents(seed: int = 7, n_events: int = 6) -> ak.Array:
    """Random jets: 0–150 constituents, exponential p_T, Gaussian spread around an axis,
    some axes at φ ≈ ±π so that the Δφ wrap matters, masses from 0 to 1 GeV."""
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n_events):
        jets = []
        for _ in range(rng.integers(1, 4)):
            m = int(rng.choice([0, 1, 2, 3, rng.integers(4, 151)]))
            axis_phi = rng.choice([rng.uniform(-math.pi, math.pi), math.pi - 0.01])
            phi = (axis_phi + rng.normal(0, 0.25, m) + math.pi) % (2 * math.pi) - math.pi
            jets.append({
                "pt": rng.exponential(20.0, m).astype(np.float32),
                "eta": rng.normal(rng.uniform(-2, 2), 0.25, m).astype(np.float32),
                "phi": phi.astype(np.float32),
                "mass": rng.uniform(0, 1, m).astype(np.float32),
            })
        events.append(jets)
    return ak.Array([[ak.zip(j).tolist() if len(j["pt"]) else [] for j in ev] for ev in events])


def per_jet_numpy(constituents: ak.Array) -> list[dict[str, np.ndarray]]:
    return [{f: ak.to_numpy(jet[f]).astype(np.float64) for f in ("pt", "eta", "phi", "mass")}
            for jet in ak.flatten(constituents, axis=1)]


def ref_rapidity(pt, eta, mass):
    """y = ½ ln((E + p_z)/(E − p_z)) directly from the four-vector (another route than asinh)."""
    pz = pt * np.sinh(eta)
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    return 0.5 * np.log((energy + pz) / (energy - pz))


def ref_pair_matrix(jet, beta):
    y = ref_rapidity(jet["pt"], jet["eta"], jet["mass"])
    dphi = np.abs(jet["phi"][:, None] - jet["phi"][None, :])
    dphi = np.where(dphi > math.pi, 2 * math.pi - dphi, dphi)
    return (((y[:, None] - y[None, :]) ** 2 + dphi**2) ** 0.5) ** beta


def ref_ecf_tensor(jet, beta):
    """e2, e3 as full symmetric sums over (i, j[, k]) divided by 2! and 3! (diagonal R = 0)."""
    if len(jet["pt"]) == 0:
        return 0.0, 0.0
    z = jet["pt"] / jet["pt"].sum()
    p = ref_pair_matrix(jet, beta)
    e2 = np.einsum("i,j,ij->", z, z, p) / 2
    e3 = np.einsum("i,j,k,ij,ik,jk->", z, z, z, p, p, p) / 6
    return float(e2), float(e3)


def ref_ecf_loop(jet, beta):
    """The definition written as loops over i<j and i<j<k (β = any)."""
    z = list(jet["pt"] / jet["pt"].sum())
    y = list(ref_rapidity(jet["pt"], jet["eta"], jet["mass"]))
    phi = list(jet["phi"])

    def r(i, j):
        dphi = abs(phi[i] - phi[j])
        dphi = 2 * math.pi - dphi if dphi > math.pi else dphi
        return math.hypot(y[i] - y[j], dphi) ** beta

    n = len(z)
    e2 = sum(z[i] * z[j] * r(i, j) for i, j in itertools.combinations(range(n), 2))
    e3 = sum(z[i] * z[j] * z[k] * r(i, j) * r(i, k) * r(j, k)
             for i, j, k in itertools.combinations(range(n), 3))
    return e2, e3


def fastjet_values(constituents: ak.Array, beta: float) -> dict[str, np.ndarray]:
    fastjet = pytest.importorskip("fastjet")
    jets = ak.flatten(constituents, axis=1)
    keep = ak.to_numpy(ak.num(jets, axis=1) >= 1)  # an empty event gives no exclusive jet
    jets = jets[keep]
    pt, eta, phi, mass = (ak.values_astype(jets[f], np.float64)
                          for f in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    particles = ak.zip({"px": px, "py": py, "pz": pz,
                        "E": np.sqrt(px**2 + py**2 + pz**2 + mass**2)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastjet's banner / deprecation chatter
        seq = fastjet.ClusterSequence(particles,
                                      fastjet.JetDefinition(fastjet.antikt_algorithm, 100.0))
        out = {}
        for key, npoint, func in (("e2", 2, "generalized"), ("e3", 3, "generalized"),
                                  ("c2", 2, "c2"), ("d2", 2, "d2")):
            values = seq.exclusive_jets_energy_correlator(njets=1, beta=beta, npoint=npoint,
                                                          func=func, normalized=True)
            out[key] = np.asarray(ak.flatten(values, axis=None), dtype=np.float64)
    return out, keep


@pytest.mark.parametrize("source", ["real", "generated"])
@pytest.mark.parametrize("beta", BETAS)
def test_ecf_match_fastjet_energy_correlator(source, beta, real_constituents):
    cons = real_constituents if source == "real" else generated_constituents()
    ours = ak.flatten(energy_correlators(cons, betas=BETAS), axis=1)
    ref, keep = fastjet_values(cons, beta)
    b = f"{beta:g}"
    for key in ("e2", "e3", "c2", "d2"):
        got = ak.to_numpy(ours[f"{key}_b{b}"]).astype(np.float64)[keep]
        # fastjet returns 0 (C2, D2: NaN for e2 = 0) for degenerate jets; ours are 0 too
        want = np.nan_to_num(ref[key], nan=0.0)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=f"{key} β={b}")
    assert np.count_nonzero(ref["e3"]) >= 5


@pytest.mark.parametrize("source", ["real", "generated"])
def test_ecf_match_formula_sums(source, real_constituents):
    cons = real_constituents if source == "real" else generated_constituents(seed=3)
    ours = ak.flatten(energy_correlators(cons, betas=BETAS), axis=1)
    jets = per_jet_numpy(cons)
    for beta in BETAS:
        b = f"{beta:g}"
        ref = np.array([ref_ecf_tensor(j, beta) for j in jets])
        e2, e3 = ref[:, 0], ref[:, 1]
        np.testing.assert_allclose(ak.to_numpy(ours[f"e2_b{b}"]), e2, rtol=1e-6, atol=0)
        np.testing.assert_allclose(ak.to_numpy(ours[f"e3_b{b}"]), e3, rtol=1e-6, atol=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            c2 = np.where(e2 > 0, e3 / e2**2, 0.0)
            d2 = np.where(e2 > 0, e3 / e2**3, 0.0)
        np.testing.assert_allclose(ak.to_numpy(ours[f"c2_b{b}"]), c2, rtol=1e-6, atol=0)
        np.testing.assert_allclose(ak.to_numpy(ours[f"d2_b{b}"]), d2, rtol=1e-6, atol=0)
    # the plain i<j<k loops, on the narrower real jets (the loop is slow in Python)
    small = [(i, j) for i, j in enumerate(jets) if 3 <= len(j["pt"]) <= 30]
    assert small
    for i, jet in small:
        e2, e3 = ref_ecf_loop(jet, 1.0)
        assert ours[i]["e2_b1"] == pytest.approx(e2, rel=1e-6)
        assert ours[i]["e3_b1"] == pytest.approx(e3, rel=1e-6)


def test_efp1_is_the_ordered_pair_sum(real_constituents):
    got = ak.to_numpy(ak.flatten(efp1(real_constituents), axis=1)).astype(np.float64)
    want = []
    for jet in per_jet_numpy(real_constituents):
        z = jet["pt"] / jet["pt"].sum()
        theta = ref_pair_matrix(jet, 1.0)
        want.append(sum(z[i] * z[j] * theta[i, j]
                        for i in range(len(z)) for j in range(len(z))))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_max_constituents_keeps_the_leading_ones(real_constituents):
    n = 20
    ours = ak.flatten(energy_correlators(real_constituents, betas=(1.0,), max_constituents=n),
                      axis=1)
    for i, jet in enumerate(per_jet_numpy(real_constituents)):
        top = np.argsort(-jet["pt"], kind="stable")[:n]
        e2, e3 = ref_ecf_tensor({k: v[top] for k, v in jet.items()}, 1.0)
        assert ours[i]["e2_b1"] == pytest.approx(e2, rel=1e-6)
        assert ours[i]["e3_b1"] == pytest.approx(e3, rel=1e-6)


def test_ecf_output_layout_and_defined_values():
    cons = ak.Array([[[], [{"pt": 5.0, "eta": 0.0, "phi": 0.0, "mass": 0.0}]],
                     [],
                     [[{"pt": 5.0, "eta": 0.0, "phi": 0.0, "mass": 0.0},
                       {"pt": 5.0, "eta": 0.0, "phi": 0.0, "mass": 0.0},
                       {"pt": 5.0, "eta": 0.0, "phi": 0.0, "mass": 0.0}]]])
    out = energy_correlators(cons, betas=(1.0, 2.0))
    assert out.fields == ["e2_b1", "e3_b1", "c2_b1", "d2_b1", "e2_b2", "e3_b2", "c2_b2",
                          "d2_b2"]
    assert ak.num(out, axis=1).tolist() == [2, 0, 1]
    assert ak.all(ak.flatten(out["c2_b1"], axis=None) == 0)  # empty, single, collinear
    assert str(out["d2_b2"].type.content.content) == "float32"
