"""Per-event jet features of the two p_T-leading AK8 jets, cached per file (input of qr_gain.py).

    python studies/qr_features.py --data /work/data/lhco/r1 --out /work/data/qrgain/features

For every file of the datasets: the branch-level features (no constituents, so a file takes
about a second) of jets 1 and 2 (``pt, eta, mass, msoftdrop, tau21, tau32, rho, log_pt``), m_jj, the
generator weight and the running event number. One ``.npz`` per input file, named by its
sha256 so a regenerated file is recomputed; written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import awkward as ak
import numpy as np

from coffea_ad.features import dijet_mass, jet_features
from coffea_ad.nn.data import _event_weights, iter_events

NAMES = ("pt", "eta", "mass", "msoftdrop", "tau21", "tau32", "rho", "log_pt")
VERSION = 2  # bumped when NAMES changes: part of the cache file name


def rows(events) -> dict[str, np.ndarray]:
    jet = events.FatJet
    second = ak.to_numpy(ak.fill_none(ak.pad_none(jet.pt, 2, axis=1)[:, 1], 0.0))
    idx = np.flatnonzero(second > 0.0)
    sel = events[idx]
    feats = jet_features(sel, list(NAMES), jets="FatJet", nonfinite="zero")
    out = {f"{n}_j{i + 1}": ak.to_numpy(feats[n][:, i]).astype(np.float32)
           for i in (0, 1) for n in NAMES}
    j = sel.FatJet
    out["mjj"] = ak.to_numpy(dijet_mass(j[:, 0], j[:, 1])).astype(np.float32)
    out["weight"] = _event_weights(events)[idx].astype(np.float32)
    out["event"] = idx.astype(np.int64)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--out", type=Path, default=Path("/work/data/qrgain/features"))
    ap.add_argument("--datasets", nargs="+", default=["lhco_xy2", "lhco_xy3", "lhco_qcd"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for ds in args.datasets:
        provs = sorted((args.data / ds).glob(f"{ds}_*.json"))
        done = 0
        for prov in provs:
            meta = json.loads(prov.read_text())
            key = args.out / f"{ds}_{meta['index']:04d}_{meta['sha256'][:12]}_v{VERSION}.npz"
            if key.is_file():
                continue
            fs = {ds: {"files": {str(prov.with_suffix(".root")): "Events"}, "metadata": {}}}
            (_, _, events), = list(iter_events(fs))
            t = rows(events)
            t["event"] = t["event"] + meta["first_event"]
            t["xsec_pb"] = np.float64(meta.get("xsec_pb", np.nan))
            t["nevents"] = np.int64(meta["nevents"])
            tmp = key.with_name(key.name + ".part.npz")
            np.savez(tmp, **t)
            tmp.replace(key)
            done += 1
            if done % 20 == 0:
                print(f"{ds}: {done} files, {time.perf_counter() - t0:.0f} s", flush=True)
        print(f"{ds}: {len(provs)} files ({done} new), {time.perf_counter() - t0:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
