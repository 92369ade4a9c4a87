"""AUC of the shipped graph AE (``models/svj_gae.onnx``) on jets it was not trained on.

Scores the two leading AK8 jets (p_T > 200 GeV, |η| < 2.4: the training selection) of the
``qcd_test`` files (a QCD sample generated with another seed than ``qcd_train``) and of the
SVJ signal points, through the same chain as the processors (``OnnxScorer.score_events``),
and prints the jet-level AUC raw and with QCD reweighted to each signal's jet-p_T spectrum
(:func:`coffea_ad.stats.kinematics.reweighted_auc`, 100 GeV bins from 200 GeV to 2 TeV).
Jets carry their event's generator weight (the QCD samples are generated p̂_T-flattened:
the weights restore the physical spectrum).

    python studies/svj_gae_auc.py --fileset /work/data/svj/fileset.json --events 20000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import awkward as ak
import numpy as np

warnings.filterwarnings("ignore", message="Missing cross-reference index")


def leading_scores(scorer, files: list[str], max_events: int) -> tuple[np.ndarray, ...]:
    """(scores, p_T, generator weights) of the two leading good jets of up to ``max_events``
    events."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    scores, pts, weights, seen = [], [], [], 0
    for path in files:
        if seen >= max_events:
            break
        events = NanoEventsFactory.from_root(
            {path: "Events"}, schemaclass=PFNanoAODSchema, mode="virtual",
            entry_stop=max_events - seen).events()
        seen += len(events)
        jets = events.FatJet
        s = scorer.score_events(events)
        good = (jets.pt > 200) & (abs(jets.eta) < 2.4)
        scores.append(ak.to_numpy(ak.flatten(s[good][:, :2])))
        pts.append(ak.to_numpy(ak.flatten(jets.pt[good][:, :2])))
        lead = jets.pt[good][:, :2]
        weights.append(ak.to_numpy(ak.flatten(ak.broadcast_arrays(events.genWeight, lead)[0])))
    return tuple(np.concatenate(a).astype(np.float64) for a in (scores, pts, weights))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fileset", type=Path, required=True)
    parser.add_argument("--model", type=Path,
                        default=Path(__file__).resolve().parents[1] / "models" / "svj_gae.onnx")
    parser.add_argument("--background", default="qcd_test")
    parser.add_argument("--signals", default="svj_1500_0.3,svj_3000_0.3,svj_4500_0.3")
    parser.add_argument("--events", type=int, default=20000, help="events per dataset")
    args = parser.parse_args()

    from coffea_ad.inference import OnnxScorer
    from coffea_ad.stats.kinematics import reweighted_auc
    from coffea_ad.stats.roc import auc

    fileset = json.loads(args.fileset.read_text())
    scorer = OnnxScorer(args.model, intra_op_threads=1)
    bkg, bkg_pt, bkg_w = leading_scores(scorer, list(fileset[args.background]["files"]),
                                        args.events)
    edges = np.arange(200.0, 2001.0, 100.0)
    print(f"{args.model.name}: {len(bkg)} {args.background} jets")
    print(f"{'signal':<16} {'jets':>7} {'AUC':>6} {'AUC p_T-reweighted':>19} {'coverage':>9}")
    for name in args.signals.split(","):
        sig, sig_pt, sig_w = leading_scores(scorer, list(fileset[name]["files"]), args.events)
        raw = auc(bkg, sig, weights_bkg=bkg_w, weights_sig=sig_w)
        rw, coverage = reweighted_auc(bkg, sig, bkg_pt, sig_pt, edges, weights_bkg=bkg_w,
                                      weights_sig=sig_w)
        print(f"{name:<16} {len(sig):>7} {raw:>6.3f} {rw:>19.3f} {coverage:>9.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
