"""Per-event tables of the SVJ studies: the two leading preselected AK8 jets' features and the
event variables, read once from generated files with the library's feature code and cached.

The preselection is the SVJ processor's: FatJets with p_T > 200 GeV and |η| < 2.4, events with
two of them; m_T of the two leading ones and MET (``coffea_ad.features.transverse_mass``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import awkward as ak
import numpy as np

#: every per-jet feature the studies look at (a model picks its inputs among these)
FEATURES = ["pt", "eta", "mass", "msoftdrop", "log_pt", "rho", "ptd", "axis_major",
            "axis_minor", "girth", "lha", "efp1", "c2_b1", "d2_b1", "c2_b2", "d2_b2", "tau21",
            "tau32", "n_constituents"]
MIN_PT, MAX_ETA = 200.0, 2.4


def event_table(events) -> dict[str, np.ndarray]:
    from coffea_ad.features import jet_features, transverse_mass
    from coffea_ad.features.event import _met_name

    jets = events["FatJet"]
    feats = jet_features(events, FEATURES)
    good = (jets.pt > MIN_PT) & (abs(jets.eta) < MAX_ETA)
    has2 = ak.to_numpy(ak.num(jets[good], axis=1) >= 2)
    lead = jets[good][has2][:, :2]
    f = feats[good][has2][:, :2]
    met = events[_met_name(events)][has2]
    mt = ak.to_numpy(transverse_mass(lead[:, 0], lead[:, 1], met)).astype(np.float64)
    met_pt = ak.to_numpy(met.pt).astype(np.float64)
    out = {"mt": mt, "met": met_pt,
           "rt": np.divide(met_pt, mt, out=np.zeros_like(mt), where=mt > 0),
           "deta": np.abs(ak.to_numpy(lead[:, 0].eta).astype(np.float64)
                          - ak.to_numpy(lead[:, 1].eta).astype(np.float64)),
           "weight": ak.to_numpy(events.genWeight[has2]).astype(np.float64)}
    for i in (0, 1):
        dphi = np.abs((ak.to_numpy(lead[:, i].phi) - ak.to_numpy(met.phi) + np.pi)
                      % (2 * np.pi) - np.pi)
        out[f"dphi_met_j{i + 1}"] = dphi
        x = np.stack([ak.to_numpy(f[n][:, i]).astype(np.float32) for n in FEATURES], axis=1)
        out[f"j{i + 1}"] = x
    return out


def dataset_files(data: Path, dataset: str) -> list[str]:
    """The dataset's files from ``fileset.json``, else the complete files of ``DATA/DATASET``
    (those with their provenance JSON, which the generator writes last)."""
    fs = json.loads((data / "fileset.json").read_text()) if (data / "fileset.json").exists() else {}
    if dataset in fs:
        return sorted(fs[dataset]["files"])
    return sorted(str(p) for p in (data / dataset).glob("*.root") if p.with_suffix(".json").exists())


def load(data: Path, dataset: str, cache: Path | None = None,
         max_files: int | None = None) -> dict[str, np.ndarray]:
    """The dataset's event table (cached as ``cache/DATASET.npz``; ``max_files`` reads only
    the first files when it is made)."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    cache = cache or data / "cache"
    path = cache / f"{dataset}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    files = dataset_files(data, dataset)[:max_files]
    if not files:
        raise FileNotFoundError(f"dataset {dataset!r}: no files in {data}/fileset.json or "
                                f"{data / dataset}")
    parts = []
    for file in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ev = NanoEventsFactory.from_root({file: "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="virtual").events()
        parts.append(event_table(ev))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{dataset}.tmp.npz"
    np.savez(tmp, **out)
    tmp.rename(path)
    return out


def jets(table: dict[str, np.ndarray], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Both leading jets stacked: ``([2n, len(names)] features, [2n] event index)``."""
    idx = [FEATURES.index(n) for n in names]
    x = np.concatenate([table["j1"][:, idx], table["j2"][:, idx]])
    ev = np.concatenate([np.arange(len(table["mt"]))] * 2)
    return x, ev
