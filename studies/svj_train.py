"""Train the p_T-conditioned SVJ flow (``training/svj_flow.py``) on the study's cached tables,
one ONNX model per seed, for ``svj_validation.py`` and for shipping.

    python studies/svj_train.py --data /work/data/svj --out OUTDIR --seed 0 --seed 1 \\
        [--set epochs=20 ...]

Jets: the two leading AK8 jets with p_T > 200 GeV and |η| < 2.4 of events with two of them
(the SVJ processor's preselection) in ``qcd_train``; 20 % of the events (seeded) are the
validation split. Writes ``OUTDIR/svj_flow_s{seed}.{onnx,json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import svj_tables

from coffea_ad.cli import parse_settings
from coffea_ad.cli.train import load_recipe
from coffea_ad.nn import recipe
from coffea_ad.nn.data import load_fileset


def reproduce_check(data: Path, names: list[str], n_events: int = 20) -> dict:
    """The feature rows of the first ``n_events`` events of ``qcd_train`` (two leading jets
    above 200 GeV, :func:`coffea_ad.nn.data.jet_rows`): regenerating that many events with the
    recorded process, settings and seed must give them again (file ``i`` of a dataset has its
    own seed, so a shorter run reproduces the first events of file 0)."""
    import warnings

    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.nn.data import jet_rows

    first = svj_tables.dataset_files(data, "qcd_train")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root({first: "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="virtual", entry_stop=n_events).events()
    rows = jet_rows(events, names, max_jets=2, min_pt=200.0)
    return {"dataset": "qcd_train", "events": n_events, "features": names,
            "selection": {"max_jets": 2, "min_pt": 200.0},
            "rows": rows["x"].astype(float).round(6).tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, action="append", required=True)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    svj_flow = load_recipe("svj_flow")
    base = recipe.resolve_config(svj_flow.CONFIG, parse_settings(tuple(args.settings)),
                                 recipe="svj_flow")
    table = svj_tables.load(args.data, "qcd_train")
    fileset = load_fileset(args.data / "fileset.json")
    signal = svj_tables.load(args.data, "svj_3000_0.3")
    for seed in args.seed:
        cfg = dict(base, seed=seed, train_datasets=["qcd_train"])
        names = [*cfg["conditions"], *cfg["inputs"]]
        x, ev = svj_tables.jets(table, names)
        val = (np.random.default_rng(seed).random(len(table["mt"])) < cfg["val_fraction"])[ev]
        t0 = time.time()
        model, history = svj_flow.build_and_fit(x[~val], x[val], cfg)
        print(f"seed {seed}: {len(history.train_loss)} epochs, {time.time() - t0:.0f} s, "
              f"best validation nll {history.best_val_loss:.4f}", flush=True)
        xs, _ = svj_tables.jets(signal, names)
        command = ("python studies/svj_train.py --data DATA --out OUT "
                   f"--seed {seed} " + " ".join(f"--set {shlex.quote(s)}"
                                                for s in args.settings)).strip()
        out = args.out / f"svj_flow_s{seed}"
        result = svj_flow.export(
            model, history, cfg, out=out, fileset=fileset, train_ds=["qcd_train"],
            x_train=x[~val], x_test=x[val], w_test=np.ones(int(val.sum())),
            evals={"svj_3000_0.3": (xs, np.ones(len(xs)))},
            n_rows={"train": int((~val).sum()), "val": int(val.sum()), "test": 0},
            command=command)
        contract_path = Path(result["contract"])
        contract = json.loads(contract_path.read_text())
        contract["training"]["reproduce"] = reproduce_check(args.data, names)
        contract_path.write_text(json.dumps(contract, indent=2) + "\n")
        print(f"  wrote {result['onnx']} (AUC vs validation QCD jets: {result['auc']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
