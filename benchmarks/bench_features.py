"""Jets/s of coffea_ad.features: columnar vs a per-jet Python loop vs fastjet's EnergyCorrelator.

Run: ``python benchmarks/bench_features.py [--copies 100] [--repeats 5]``

All numbers are medians over ``--repeats`` runs measured side by side in this one process on
the same jets: the 24 real AK8 jets of ``../shared/data/cms/pfnano.root`` (17–84 constituents),
replicated ``--copies`` times. Single-threaded (OMP/numba threads = 1). The last table is the
cost of e2+e3 (all three β) per jet against the number of constituents M, on generated jets,
with the fitted power of M.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import awkward as ak
import numpy as np

from coffea_ad.features import (
    energy_correlators,
    jet_constituents,
    jet_features,
    jet_shapes,
)

REPO = Path(__file__).resolve().parents[1]
PFNANO = Path(os.environ.get("COFFEA_AD_CMS_DATA", REPO.parent / "shared" / "data" / "cms")) / (
    "pfnano.root")


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_jets(copies: int):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(PFNANO): "Events"},
                                             schemaclass=PFNanoAODSchema, mode="eager").events()
    cons = ak.materialize(jet_constituents(events)) if hasattr(ak, "materialize") else \
        jet_constituents(events)
    cons = ak.zip({f: cons[f] for f in ("pt", "eta", "phi", "mass")})
    jets = ak.zip({"eta": events.FatJet.eta, "phi": events.FatJet.phi})
    cons = ak.concatenate([cons] * copies)
    jets = ak.concatenate([jets] * copies)
    # contiguous buffers, as a fresh read of a large file would give
    return ak.to_packed(cons), ak.to_packed(jets)


def load_event_records(copies: int):
    """Plain events records (FatJet, FatJetPFCands, PFCands) read with uproot, replicated."""
    import uproot

    tree = uproot.open(PFNANO)["Events"]
    arr = tree.arrays(["FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_pt",
                       "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx", "PFCands_pt",
                       "PFCands_eta", "PFCands_phi", "PFCands_mass"])
    arr = ak.to_packed(ak.concatenate([arr] * copies))
    events = ak.zip({
        "FatJet": ak.zip({f: arr[f"FatJet_{f}"] for f in ("pt", "eta", "phi", "mass")}),
        "FatJetPFCands": ak.zip({"jetIdx": arr.FatJetPFCands_jetIdx,
                                 "pFCandsIdx": arr.FatJetPFCands_pFCandsIdx}),
        "PFCands": ak.zip({f: arr[f"PFCands_{f}"] for f in ("pt", "eta", "phi", "mass")}),
    }, depth_limit=1)
    return events, arr


def loop_demo_features(arr, n_events: int):
    """Per-jet loop for the demo AE inputs: group links, then η, φ, m, pTD, axes per jet."""
    out = []
    for e in range(n_events):
        jet_idx = arr.FatJetPFCands_jetIdx[e].tolist()
        cand_idx = arr.FatJetPFCands_pFCandsIdx[e].tolist()
        pt, eta, phi = (arr[f"PFCands_{f}"][e].tolist() for f in ("pt", "eta", "phi"))
        for j, (jeta, jphi, jm) in enumerate(zip(arr.FatJet_eta[e].tolist(),
                                                  arr.FatJet_phi[e].tolist(),
                                                  arr.FatJet_mass[e].tolist(), strict=True)):
            cands = [c for jj, c in zip(jet_idx, cand_idx, strict=True) if jj == j]
            jet = {"pt": [pt[c] for c in cands], "eta": [eta[c] for c in cands],
                   "phi": [phi[c] for c in cands], "jet_eta": jeta, "jet_phi": jphi}
            ptd_v, major, minor, _, _ = loop_substructure([jet])[0]
            out.append((jeta, jphi, jm, ptd_v, major, minor))
    return out


# ------------------------------------------------------------------- per-jet loop references
def wrap(x: float) -> float:
    return (x + math.pi) % (2 * math.pi) - math.pi


def loop_substructure(jets_list):
    out = []
    for jet in jets_list:
        pt, eta, phi = jet["pt"], jet["eta"], jet["phi"]
        s1 = sum(pt)
        ptd_v = math.sqrt(sum(p * p for p in pt)) / s1
        dphi = [wrap(p - jet["jet_phi"]) for p in phi]
        w = [p * p for p in pt]
        sw = sum(w)
        me = sum(a * b for a, b in zip(w, eta, strict=True)) / sw
        mp = sum(a * b for a, b in zip(w, dphi, strict=True)) / sw
        a = sum(x * (e - me) ** 2 for x, e in zip(w, eta, strict=True)) / sw
        b = sum(x * (p - mp) ** 2 for x, p in zip(w, dphi, strict=True)) / sw
        c = sum(x * (e - me) * (p - mp) for x, e, p in zip(w, eta, dphi, strict=True)) / sw
        root = math.sqrt(((a - b) / 2) ** 2 + c * c)
        major = math.sqrt(max((a + b) / 2 + root, 0))
        minor = math.sqrt(max((a + b) / 2 - root, 0))
        dr = [math.hypot(e - jet["jet_eta"], d) for e, d in
              zip(eta, [wrap(p - jet["jet_phi"]) for p in phi], strict=True)]
        g = sum(p * r for p, r in zip(pt, dr, strict=True)) / s1
        lh = sum(p / s1 * math.sqrt(r / 0.8) for p, r in zip(pt, dr, strict=True))
        out.append((ptd_v, major, minor, g, lh))
    return out


def loop_ecf(jets_list, beta: float):
    """e2, e3 by plain loops over i<j and i<j<k with a precomputed pair table."""
    out = []
    for jet in jets_list:
        pt, y, phi = jet["pt"], jet["y"], jet["phi"]
        m = len(pt)
        s1 = sum(pt)
        z = [p / s1 for p in pt]
        r = [[0.0] * m for _ in range(m)]
        for i in range(m):
            for j in range(i + 1, m):
                dphi = abs(phi[i] - phi[j])
                dphi = 2 * math.pi - dphi if dphi > math.pi else dphi
                r[i][j] = r[j][i] = math.hypot(y[i] - y[j], dphi) ** beta
        e2 = e3 = 0.0
        for i in range(m):
            for j in range(i + 1, m):
                e2 += z[i] * z[j] * r[i][j]
                rij = z[i] * z[j] * r[i][j]
                for k in range(j + 1, m):
                    e3 += rij * z[k] * r[i][k] * r[j][k]
        out.append((e2, e3, e3 / e2**2, e3 / e2**3))
    return out


def as_lists(cons, jets):
    out = []
    for jc, axis in zip(ak.flatten(cons, axis=1).tolist(), ak.flatten(jets, axis=1).tolist(), strict=True):
        pt = [c["pt"] for c in jc]
        eta = [c["eta"] for c in jc]
        mass = [c["mass"] for c in jc]
        y = [math.asinh(p * math.sinh(e) / math.sqrt(p * p + m * m))
             for p, e, m in zip(pt, eta, mass, strict=True)]
        out.append({"pt": pt, "eta": eta, "phi": [c["phi"] for c in jc], "y": y,
                    "jet_eta": axis["eta"], "jet_phi": axis["phi"]})
    return out


# ------------------------------------------------------------------- fastjet reference
def fastjet_setup(cons):
    import fastjet

    flat = ak.flatten(cons, axis=1)
    pt, eta, phi, mass = (ak.values_astype(flat[f], np.float64)
                          for f in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    particles = ak.zip({"px": px, "py": py, "pz": pz,
                        "E": np.sqrt(px**2 + py**2 + pz**2 + mass**2)})
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, 100.0)
    return fastjet, particles, jet_def


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100, help="replicas of the 24 real jets")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-jets", type=int, default=96,
                        help="jets timed with the (slow) Python loops")
    args = parser.parse_args()

    cons, jets = load_jets(args.copies)
    n_jets = int(ak.sum(ak.num(cons, axis=1)))
    n_const = ak.flatten(ak.num(cons, axis=2))
    print(f"jets: {n_jets} (real pfnano.root AK8 jets x{args.copies}), constituents per jet: "
          f"median {int(np.median(n_const))}, max {int(ak.max(n_const))}")

    # warm-up: numba compilation (cached on disk after the first run) is not timed
    energy_correlators(cons[:2])
    loop_subset = as_lists(cons[: max(1, args.loop_jets // 2)], jets[: max(1, args.loop_jets // 2)])
    n_loop = len(loop_subset)

    rows = []

    events, raw = load_event_records(args.copies)
    demo = ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"]
    jet_features(events[:2], demo)
    t_demo = median_time(lambda: jet_features(events, demo), args.repeats)
    n_loop_events = max(1, args.loop_jets // 2)
    n_demo_loop = int(ak.sum(ak.num(raw.FatJet_pt[:n_loop_events])))
    t_demo_loop = median_time(lambda: loop_demo_features(raw, n_loop_events),
                              args.repeats) / n_demo_loop
    rows.append(("demo AE inputs (+links)", n_jets / t_demo, 1 / t_demo_loop, None))

    t_col = median_time(lambda: jet_shapes(cons, jets), args.repeats)
    t_loop = median_time(lambda: loop_substructure(loop_subset), args.repeats) / n_loop
    rows.append(("pTD+axes+girth+LHA", n_jets / t_col, 1 / t_loop, None))

    t_ecf_all = median_time(lambda: energy_correlators(cons), args.repeats)
    t_ecf_b1 = median_time(lambda: energy_correlators(cons, betas=(1.0,)), args.repeats)
    ecf_loop_jets = loop_subset[: max(4, n_loop // 4)]
    t_loop_ecf = median_time(lambda: loop_ecf(ecf_loop_jets, 1.0), 1) / len(ecf_loop_jets)

    fastjet, particles, jet_def = fastjet_setup(cons)

    def fj_c2d2(cluster_each_time: bool, seq=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = fastjet.ClusterSequence(particles, jet_def) if cluster_each_time else seq
            s.exclusive_jets_energy_correlator(njets=1, beta=1.0, npoint=2, func="c2")
            s.exclusive_jets_energy_correlator(njets=1, beta=1.0, npoint=2, func="d2")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = fastjet.ClusterSequence(particles, jet_def)
    t_fj_total = median_time(lambda: fj_c2d2(True), args.repeats)
    t_fj_corr = median_time(lambda: fj_c2d2(False, seq), args.repeats)
    rows.append(("e2,e3,C2,D2 β=1", n_jets / t_ecf_b1, 1 / t_loop_ecf, n_jets / t_fj_total))
    rows.append(("e2,e3,C2,D2 β=0.5,1,2", n_jets / t_ecf_all, 1 / (3 * t_loop_ecf), None))

    print(f"\n{'observables':24s} {'columnar jets/s':>16s} {'loop jets/s':>12s} "
          f"{'ratio':>8s} {'fastjet jets/s':>15s} {'ratio':>7s}")
    for name, col, loop, fj in rows:
        fj_text = f"{fj:15.0f} {col / fj:6.1f}x" if fj else f"{'-':>15s} {'-':>7s}"
        print(f"{name:24s} {col:16.0f} {loop:12.1f} {col / loop:7.0f}x {fj_text}")
    print(f"\nfastjet EnergyCorrelator C2+D2 (β=1): {n_jets / t_fj_total:.0f} jets/s including "
          f"the one-jet reclustering, {n_jets / t_fj_corr:.0f} jets/s correlators only; "
          f"coffea_ad C2+D2 (with e2, e3) β=1: {n_jets / t_ecf_b1:.0f} jets/s -> "
          f"{(n_jets / t_ecf_b1) / (n_jets / t_fj_corr):.1f}x the correlator-only rate")
    print(f"(loops timed on {n_loop} jets for substructure, {len(ecf_loop_jets)} for ECFs)")

    # ------------------------------------------------------------ e3 cost vs constituent count
    print(f"\n{'M':>5s} {'jets':>6s} {'µs/jet (e2+e3, 3 β)':>20s} {'ns/triplet/β':>13s}")
    rng = np.random.default_rng(1)
    ms, per_jet = [], []
    for m in (10, 25, 50, 100, 200, 400):
        n = max(4, int(2_000_000 / m**2))
        gen = ak.unflatten(ak.zip({
            "pt": rng.exponential(20.0, n * m).astype(np.float32),
            "eta": rng.normal(0, 0.3, n * m).astype(np.float32),
            "phi": rng.normal(0, 0.3, n * m).astype(np.float32),
            "mass": np.zeros(n * m, np.float32)}), m)[np.newaxis]
        t = median_time(lambda gen=gen: energy_correlators(gen), args.repeats) / n
        ms.append(m)
        per_jet.append(t)
        triplets = m * (m - 1) * (m - 2) / 6
        print(f"{m:5d} {n:6d} {t * 1e6:20.1f} {t / triplets / 3 * 1e9:13.3f}")
    slope = np.polyfit(np.log(ms[2:]), np.log(per_jet[2:]), 1)[0]
    print(f"fitted cost ∝ M^{slope:.2f} for M ≥ 50 (M³ is the exact triple sum)")
    link_rows(events, args.repeats)


def link_rows(events, repeats: int) -> None:
    """The flat link-table paths: one pass over the link rows as the file has them (jet
    order) against grouping them by jet first, on the same replicated real events."""
    from coffea_ad.features.constituents import jet_links, link_table
    from coffea_ad.features.particles import (
        _jet_rows,
        _take_ranges,
        _valid_links,
        _walk_rows,
    )
    from coffea_ad.features.substructure import linked_moments, table_moments

    axis = [ak.to_numpy(ak.flatten(events.FatJet[f])) for f in ("eta", "phi")]

    def grouped_moments():
        links = jet_links(events)
        return linked_moments(links, *axis), links.counts

    table = link_table(events)
    one, two = table_moments(table, *axis), grouped_moments()
    assert one[0].tobytes() == two[0].tobytes() and np.array_equal(one[1], two[1])
    rows = (table.jet_offsets, table.cand_offsets, table.link_offsets, table.jet_index,
            table.cand_index)
    columns = (table.column("pt"), None, table.column("eta"), table.column("phi"))
    chosen = np.arange(0, int(table.jet_offsets[-1]), 2)  # every other jet, as a selection

    def walked():
        first, end, event_of, ordered = _jet_rows(*rows)
        assert ordered
        return _walk_rows(first, end, event_of, *rows, chosen, *columns)

    def grouped_chosen():
        links = link_table(events).links()
        offsets, index = _take_ranges(links.offsets, chosen)
        return _valid_links(offsets, links.cand_index[index], *columns)

    assert all(np.array_equal(a, b) for a, b in zip(walked(), grouped_chosen(), strict=True))
    # repeated in one process, both sides get back the pages the previous call freed: this
    # is the compute alone. In a chain each chunk's arrays are new, and what the one pass
    # saves there is mostly first writes to fresh pages (bench_chain's features stage).
    print(f"\nflat link table, {len(table.jet_index)} link rows: one pass over the rows as read "
          "vs grouping by jet first (median ms, warm memory)")
    for label, one_pass, group_first in (
            ("η–φ shapes + counts", lambda: table_moments(link_table(events), *axis),
             grouped_moments),
            ("valid constituents of every other jet", walked, grouped_chosen)):
        a, b = (median_time(f, repeats) * 1e3 for f in (one_pass, group_first))
        print(f"  {label:38s} {a:7.2f} vs {b:7.2f}  ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
