"""Decorrelate trained SVJ flows (``svj_train.py`` outputs): append the per-p_T quantile map
of ``training/svj_flow.py:calibrate`` measured on independent QCD, so that ``score > ln 10``
tags 10 % of QCD jets at every jet p_T.

    python studies/svj_calibrate.py --data /work/data/svj --out OUTDIR \\
        --model MODELS/svj_flow_s0.onnx ... --calibration qcd_cal --calibration qcd_cal2

Jets: the two leading preselected AK8 jets (p_T > 200 GeV, |η| < 2.4, events with two) of the
calibration datasets, weighted with their generator weights (the p̂_T-flattened samples then
give the physical mixture at each jet p_T). Writes ``OUTDIR/NAME.{onnx,json,md}`` (inputs are
copied, never modified) and prints the mistag per jet-p_T bin on ``qcd_test``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import svj_tables

from coffea_ad.cli import parse_settings
from coffea_ad.cli.train import load_recipe
from coffea_ad.nn import recipe
from coffea_ad.nn.data import load_fileset

PT_BINS = [200, 300, 400, 500, 600, 800, 1000, 1300, 1700, 2500]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, action="append", required=True)
    ap.add_argument("--calibration", action="append", required=True, metavar="DATASET")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    svj_flow = load_recipe("svj_flow")
    fileset = load_fileset(args.data / "fileset.json")
    cal_tables = [svj_tables.load(args.data, n) for n in args.calibration]
    test = svj_tables.load(args.data, "qcd_test")
    signal = svj_tables.load(args.data, "svj_3000_0.3")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.model:
        contract = json.loads(path.with_suffix(".json").read_text())
        if set(args.calibration) & set(contract["training"]["datasets"]):
            raise SystemExit(f"error: {path}: calibration datasets overlap the training ones "
                             f"{contract['training']['datasets']}")
        names = contract["inputs"][0]["features"]
        n_c = len(contract["training"]["conditions"])
        cfg = recipe.resolve_config(svj_flow.CONFIG, parse_settings(tuple(args.settings)),
                                    recipe="svj_flow")
        cfg.update(conditions=names[:n_c], inputs=names[n_c:])
        out = args.out / path.name
        if out.resolve() == path.resolve():
            raise SystemExit(f"error: --out {args.out} holds the input model {path}; choose "
                             "another folder")
        copied = []
        for suffix in (".onnx", ".json", ".md", "_history.json", "_loss.png"):
            src = path.with_name(path.stem + suffix)
            if src.exists():
                copied.append(out.with_name(out.stem + suffix))
                shutil.copy(src, copied[-1])
        parts = [svj_tables.jets(t, names) for t in cal_tables]
        x_cal = np.concatenate([p[0] for p in parts])
        w_cal = np.concatenate([np.concatenate([t["weight"]] * 2) for t in cal_tables])
        xt, _ = svj_tables.jets(test, names)
        xs, _ = svj_tables.jets(signal, names)
        command = ("python studies/svj_calibrate.py --data DATA --out OUT --model MODEL "
                   + " ".join(f"--calibration {n}" for n in args.calibration)
                   + "".join(f" --set {s}" for s in args.settings))
        try:
            table = svj_flow.calibrate(
                out, x_cal, w_cal, datasets=args.calibration,
                samples=svj_flow.samples_by_content(fileset, args.calibration), cfg=cfg,
                x_test=xt, w_test=np.concatenate([test["weight"]] * 2),
                evals={"svj_3000_0.3": (xs, np.ones(len(xs)))}, command=command,
                selection={"jets": "FatJet", "max_jets": 2, "min_pt": svj_tables.MIN_PT,
                           "max_abs_eta": svj_tables.MAX_ETA, "events_with_two": True})
        except Exception:
            for p in copied:  # no uncalibrated copy left behind under the calibrated name
                p.unlink(missing_ok=True)
            raise
        print(f"{out}: calibrated on {len(x_cal)} jets; n_eff per grid point "
              f"{np.round(table.n_eff).astype(int).tolist()}")
        # the mistag at the 10 % cut per jet-p_T bin on the independent qcd_test
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        score = sess.run(["score"], {"features": xt.astype(np.float32)})[0]
        w, pt = np.concatenate([test["weight"]] * 2), np.exp(xt[:, 0])
        cells = []
        for lo, hi in itertools.pairwise(PT_BINS):
            s = (pt >= lo) & (pt < hi)
            f = w[s][score[s] > np.log(10.0)].sum() / w[s].sum()
            n_eff = w[s].sum() ** 2 / (w[s] ** 2).sum()
            cells.append(f"{lo}-{hi}: {f:.3f}±{np.sqrt(f * (1 - f) / n_eff):.3f}")
        print("  qcd_test mistag at score > ln 10 per jet p_T [GeV]: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
