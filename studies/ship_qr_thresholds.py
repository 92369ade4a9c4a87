"""Write the bump-hunt processor's shipped QR thresholds (``models/lhco_jet_ae_qr.json``).

    python studies/ship_qr_thresholds.py --data /work/data/lhco/r1 \
        --model models/lhco_jet_ae.onnx --combine min --max-files 40 \
        --write-thresholds models/lhco_jet_ae_qr.json

The event score is the jet model's score of the two leading AK8 jets combined (``min``/
``max``/``sum``); the background ``lhco_qcd`` of the first ``--max-files`` files is split by
event number, and half A (even) sets the thresholds at background quantiles 0.5, 0.9, 0.99 vs
m_jj (quadratic fit, 3.0-4.4 TeV in 50 GeV bins), exported as correctionlib JSON. (This was
the threshold-writing part of the first ``qr_gain.py``; the gain study now lives there.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from coffea_ad.inference import OnnxScorer
from coffea_ad.nn.data import dijet_score_rows, iter_events
from coffea_ad.stats.quantile import quantile_thresholds, thresholds_to_correctionlib


def load(data: Path, dataset: str, scorer: OnnxScorer, combine: str, cache: Path,
         max_files: int) -> dict[str, np.ndarray]:
    parts = []
    from coffea_ad.inference.contract import file_sha256

    tag = f"{scorer.contract.name}_{file_sha256(scorer.model_path)[:10]}"
    for prov in sorted((data / dataset).glob(f"{dataset}_*.json"))[:max_files]:
        meta = json.loads(prov.read_text())
        key = cache / f"qr_{tag}_{combine}_{dataset}_{meta['index']:04d}_{meta['sha256'][:12]}.npz"
        if not key.is_file():
            fs = {dataset: {"files": {str(prov.with_suffix('.root')): "Events"}, "metadata": {}}}
            (_, _, events), = list(iter_events(fs))
            t = dijet_score_rows(events, scorer=scorer, combine=combine, min_pt=300.0)
            tmp = key.with_name(key.name + ".part.npz")
            np.savez(tmp, **t)
            tmp.replace(key)
        with np.load(key) as z:
            t = {k: z[k] for k in z.files}
        t["event"] = t["event"] + meta["first_event"]
        parts.append(t)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--model", type=Path, default=Path("models/lhco_jet_ae.onnx"))
    ap.add_argument("--combine", default="min", choices=["min", "max", "sum"])
    ap.add_argument("--range", type=float, nargs=2, default=(3000.0, 4400.0))
    ap.add_argument("--bin", type=float, default=50.0)
    ap.add_argument("--max-files", type=int, default=1000)
    ap.add_argument("--write-thresholds", type=Path, required=True,
                    help="write the thresholds at quantiles 0.5, 0.9, 0.99 (half A) as "
                         "the bump-hunt processor's correctionlib JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cache = args.data / "cache"
    cache.mkdir(exist_ok=True)
    scorer = OnnxScorer(args.model)
    bkg = load(args.data, "lhco_qcd", scorer, args.combine, cache, args.max_files)
    edges = np.arange(args.range[0], args.range[1] + 0.5 * args.bin, args.bin)
    half = (bkg["event"] % 2) == 0  # A: thresholds (B was the first gain study's data)
    shipped = quantile_thresholds(bkg["score"][half], bkg["mjj"][half],
                                  quantiles=[0.5, 0.9, 0.99], mass_edges=edges, degree=2)
    thresholds_to_correctionlib(
        shipped, path=args.write_thresholds,
        description=f"{args.combine} of the two leading jets' {args.model.name} scores: "
        f"background quantiles 0.5/0.9/0.99 vs m_jj from half of lhco_qcd (even event "
        f"numbers), {edges[0]:g}-{edges[-1]:g} GeV, quadratic fit")
    print(f"wrote {args.write_thresholds}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
