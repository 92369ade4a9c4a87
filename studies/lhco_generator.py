"""Where the LHCO-like generator spends its time, and which phase space feeds the study's regions.

    python studies/lhco_generator.py stages [--events 1000] [--process dijet]
    python studies/lhco_generator.py pythia [--events 200]
    python studies/lhco_generator.py window [--data /work/data/lhco/r1] [--files 20]
    python studies/lhco_generator.py slices [--events 2000]
    python studies/lhco_generator.py regions [--data /work/data/lhco/r1] [--max-files N]

- ``stages``: CPU seconds (``time.process_time``, so the numbers hold on a shared machine) per
  stage of :class:`coffea_ad.samples.events.EventMaker` plus writing, after a first 500-event
  chunk that warms numba and FastJet up; events/s per core.
- ``pythia``: CPU per event of Pythia alone for the ``dijet`` settings: ``nextBatch`` (what the
  generator calls) vs a ``next()`` loop, hadronization off, parton level off, no m̂ window.
- ``window``: from ``lhco_qcd`` files of ``coffea-ad generate lhco`` (m̂ 2.8-4.5 TeV,
  p̂T > 1.1 TeV), m̂ and p̂T of the two outgoing hard partons (GenPart status -23) vs the study's
  regions (leading FatJet p_T > 1.2 TeV; SR [3.3, 3.7), SB [3.0, 3.3) ∪ [3.7, 4.3) TeV).
  Generating a narrower window gives exactly the subset of these events inside it (equal
  weights): per generated event the SR+SB yield is N(SR+SB, window) / N(window).
- ``regions``: SR and SB background events (the study's selection) in every completed
  ``lhco_qcd`` file (provenance JSON present).
- ``slices``: SR and SB cross sections (pb) fed by phase space outside the window: m̂ 2.5-2.8
  and 4.5-5.5 TeV, p̂T 1.0-1.1 TeV (m̂ 2.8-4.5). Settings outside the process's options are
  passed to EventMaker directly (the phase-space helper reads ``pthat_max`` when present).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np

SR = (3300.0, 3700.0)
SB = ((3000.0, 3300.0), (3700.0, 4300.0))


def _pair_mass(pt, eta, phi, m):
    pt, eta, phi, m = (np.asarray(x, float) for x in (pt, eta, phi, m))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + np.maximum(m, 0) ** 2)
    s = [c[:, 0] + c[:, 1] for c in (e, px, py, pz)]
    return np.sqrt(np.maximum(s[0] ** 2 - s[1] ** 2 - s[2] ** 2 - s[3] ** 2, 0))


def _regions(fatjet_pt, fatjet_eta, fatjet_phi, fatjet_mass):
    """(SR mask, SB mask) of the study's selection from jagged FatJet columns."""
    two = ak.to_numpy(ak.num(fatjet_pt) >= 2)
    j = [ak.to_numpy(ak.fill_none(ak.pad_none(c, 2, axis=1)[:, :2], 0.0))
         for c in (fatjet_pt, fatjet_eta, fatjet_phi, fatjet_mass)]
    mjj = np.where(two, _pair_mass(*j), 0.0)
    ok = two & (j[0][:, 0] > 1200.0)
    sr = ok & (mjj >= SR[0]) & (mjj < SR[1])
    sb = ok & (((mjj >= SB[0][0]) & (mjj < SB[0][1])) | ((mjj >= SB[1][0]) & (mjj < SB[1][1])))
    return sr, sb


def stages(args) -> None:
    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.processes import resolve_settings
    from coffea_ad.samples.writer import EventsWriter

    maker = EventMaker(args.process, resolve_settings(args.process), seed=4321)
    maker.make(500, first_event=1)
    maker.timings.clear()
    out = Path(tempfile.mkdtemp()) / "x.root"
    wall0, cpu0 = time.perf_counter(), time.process_time()
    writing = 0.0
    with EventsWriter(out) as writer:
        done = 0
        while done < args.events:
            chunk = maker.make(500, first_event=501 + done)
            t = time.process_time()
            writer.write(chunk)
            writing += time.process_time() - t
            done += 500
    cpu = time.process_time() - cpu0
    parts = {**maker.timings, "writing": writing}
    print(f"{args.process}: {done} events, CPU {cpu:.2f} s = {cpu / done * 1e3:.2f} ms/event -> "
          f"{done / cpu:.0f} events/s per core (wall {time.perf_counter() - wall0:.1f} s)")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:13s} {v:7.2f} s  {100 * v / cpu:5.1f} %")
    print(f"  {'unaccounted':13s} {cpu - sum(parts.values()):7.2f} s")


def pythia(args) -> None:
    import pythia8mc

    from coffea_ad.samples.processes import pythia_commands, resolve_settings

    base = pythia_commands("dijet", resolve_settings("dijet"), seed=12345)

    def run(label, extra=(), batch=False, drop=()):
        p = pythia8mc.Pythia("", False)
        for c in base:
            if not c.startswith(drop):
                p.readString(c)
        for c in extra:
            p.readString(c)
        p.init()
        t = time.process_time()
        n = len(p.nextBatch(args.events)) if batch else sum(p.next() for _ in range(args.events))
        dt = time.process_time() - t
        info = p.infoPython()
        print(f"{label:34s} {dt / n * 1e3:6.2f} ms/event CPU ({n} events, tried/accepted "
              f"{info.nTried()}/{info.nAccepted()}, sigmaGen {info.sigmaGen() * 1e9:.3f} pb)",
              flush=True)

    run("nextBatch (as generated)", batch=True)
    run("next() loop")
    run("next(), HadronLevel:all = off", ["HadronLevel:all = off"])
    run("next(), parton level off too", ["PartonLevel:all = off", "HadronLevel:all = off"])
    run("next(), no m̂ window", drop=("PhaseSpace:mHatMin", "PhaseSpace:mHatMax"))


def window(args) -> None:
    import uproot

    mh, pth, srs, sbs = [], [], [], []
    for i in range(args.files):
        with uproot.open(args.data / "lhco_qcd" / f"lhco_qcd_{i:04d}.root") as f:
            a = f["Events"].arrays(["GenPart_pt", "GenPart_eta", "GenPart_phi", "GenPart_mass",
                                    "GenPart_status", "FatJet_pt", "FatJet_eta", "FatJet_phi",
                                    "FatJet_mass"])
        g = a[a.GenPart_status == -23]
        if not ak.all(ak.num(g.GenPart_pt) == 2):
            raise SystemExit("expected two outgoing hard partons (status -23) per event")
        gp = [ak.to_numpy(g[f"GenPart_{k}"]) for k in ("pt", "eta", "phi", "mass")]
        mh.append(_pair_mass(*gp))
        pth.append(gp[0][:, 0])
        sr, sb = _regions(a.FatJet_pt, a.FatJet_eta, a.FatJet_phi, a.FatJet_mass)
        srs.append(sr)
        sbs.append(sb)
    mh, pth, sr, sb = (np.concatenate(x) for x in (mh, pth, srs, sbs))
    use = sr | sb
    print(f"{len(mh)} events of {args.files} files; generated window m̂ [2800, 4500], p̂T > 1100:"
          f" SR {sr.mean():.4f}, SB {sb.mean():.4f}, SR+SB {use.mean():.4f} per generated event")
    q = [0.001, 0.005, 0.01]
    print("m̂ of SR+SB events, quantiles " + ", ".join(
        f"{x:g}: {np.quantile(mh[use], x):.0f}" for x in (*q, 0.99, 0.995, 0.999))
        + "; p̂T " + ", ".join(f"{x:g}: {np.quantile(pth[use], x):.0f}" for x in q))
    print(f"{'m̂ window':>14s} {'p̂T>':>6s} {'kept gen':>9s} {'SR lost':>8s} {'SB lost':>8s} "
          f"{'SR+SB/gen':>10s} {'gain':>6s}")
    base = use.mean()
    for lo, hi, ptmin in ((2800, 4500, 1100), (2900, 4500, 1100), (2950, 4500, 1100),
                          (3000, 4500, 1100), (2900, 4400, 1100), (2900, 4450, 1100),
                          (2800, 4500, 1150), (2900, 4500, 1150), (2900, 4500, 1200)):
        win = (mh >= lo) & (mh < hi) & (pth > ptmin)
        per_gen = (use & win).sum() / win.sum()
        print(f"{lo:6d}-{hi:<7d} {ptmin:6d} {win.mean():9.4f} "
              f"{1 - (sr & win).sum() / sr.sum():8.4f} {1 - (sb & win).sum() / sb.sum():8.4f} "
              f"{per_gen:10.4f} {per_gen / base:6.3f}")


def slices(args) -> None:
    from coffea_ad.samples.events import EventMaker
    from coffea_ad.samples.processes import resolve_settings

    for label, extra in (("m̂ 2.5-2.8 TeV", {"mhat_min": 2500.0, "mhat_max": 2800.0}),
                         ("m̂ 4.5-5.5 TeV", {"mhat_min": 4500.0, "mhat_max": 5500.0}),
                         ("p̂T 1.0-1.1 TeV", {"pthat_min": 1000.0, "pthat_max": 1100.0})):
        maker = EventMaker("dijet", {**resolve_settings("dijet"), **extra}, seed=777)
        n_sr = n_sb = n = 0
        while n < args.events:
            fj = maker.make(500, first_event=n + 1)["FatJet"]
            sr, sb = _regions(fj.pt, fj.eta, fj.phi, fj.mass)
            n_sr, n_sb, n = n_sr + sr.sum(), n_sb + sb.sum(), n + 500
        xs = maker.cross_section_pb()[0]
        print(f"{label}: {n} events, xsec {xs:.4g} pb, SR {n_sr} ({n_sr / n:.4f}) -> "
              f"{xs * n_sr / n:.4g} pb, SB {n_sb} ({n_sb / n:.4f}) -> {xs * n_sb / n:.4g} pb",
              flush=True)


def regions(args) -> None:
    import uproot

    provs = sorted((args.data / "lhco_qcd").glob("lhco_qcd_*.json"))[: args.max_files]
    n = n_sr = n_sb = 0
    for prov in provs:
        with uproot.open(prov.with_suffix(".root")) as f:
            a = f["Events"].arrays(["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass"])
        sr, sb = _regions(a.FatJet_pt, a.FatJet_eta, a.FatJet_phi, a.FatJet_mass)
        n, n_sr, n_sb = n + len(sr), n_sr + int(sr.sum()), n_sb + int(sb.sum())
    print(f"{len(provs)} files, {n} events, SR {n_sr} ({n_sr / n:.4f}), "
          f"SB {n_sb} ({n_sb / n:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("stages")
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--process", default="dijet")
    sub.add_parser("pythia").add_argument("--events", type=int, default=200)
    p = sub.add_parser("window")
    p.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    p.add_argument("--files", type=int, default=20)
    sub.add_parser("slices").add_argument("--events", type=int, default=2000)
    p = sub.add_parser("regions")
    p.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    p.add_argument("--max-files", type=int, default=None)
    args = ap.parse_args()
    {"stages": stages, "pythia": pythia, "window": window, "slices": slices,
     "regions": regions}[args.what](args)


if __name__ == "__main__":
    main()
