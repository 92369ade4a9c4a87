"""Template fidelity of shipped-style cVAE samplers (``models/lhco_cvae_sampler.onnx``): the
out-of-fold AUC of a classifier of template vs true signal-region background (0.5 = perfect).

Rows are built as the recipe (``training/cvae.py``) and the ``resonant`` processor build them:
:func:`coffea_ad.nn.data.dijet_rows` with mass, τ21, τ32 of the two p_T-leading AK8 jets
(``FatJet``), both above ``--min-pt`` (300 GeV), m_jj of the two; signal region
3300 <= m_jj <= 3700 GeV (edges included, as the processor's ``region``). Background files
``lhco_qcd_{first..last}`` of ``coffea-ad generate lhco -n 120000 -s 15`` (default 450-499:
never trained on by the shipped models). The template is what the processor makes: per SR
event ``--oversample`` rows from the sampler ONNX (ONNX Runtime) at the event's own m_jj, fed
:func:`coffea_ad.inference.noise.event_normals` of ``(seed, run, luminosityBlock, event)``
with the noise width of the sampler's contract. Classifier:
:func:`coffea_ad.stats.weak.kfold_classifier` (HistGradientBoosting, every row scored out of
fold).

    PYTHONPATH=src OMP_NUM_THREADS=1 python studies/lhco_cvae_fidelity.py \\
        --model models/lhco_cvae.onnx [other_cvae.onnx ...]

Rows are cached per file (npz, ``--cache``); a model is ``NAME.onnx`` with ``NAME_sampler.onnx``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

FEATURES = ["mass", "tau21", "tau32"]
NAMES = [f"{n}_j{i}" for i in (1, 2) for n in FEATURES]


def file_rows(path: Path, cache: Path, min_pt: float) -> dict[str, np.ndarray]:
    """dijet rows of one file plus its event ids; cached as npz (temp file + rename)."""
    from coffea_ad.nn.data import dijet_rows, iter_events, load_fileset

    out = cache / f"{path.stem}_dijet_pt{min_pt:g}.npz"
    if out.is_file():
        with np.load(out) as d:
            return {k: d[k] for k in d.files}
    fs = load_fileset({"d": {"files": {str(path): "Events"}, "metadata": {"process": "dijet"}}})
    ((_, _, events),) = list(iter_events(fs))
    t = dijet_rows(events, FEATURES, jets="FatJet", min_pt=min_pt)
    for name in ("run", "luminosityBlock", "event"):
        t[f"id_{name}"] = np.asarray(events[name])[t["event"]]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **t)
    tmp.replace(out)
    return t


def load(data: Path, first: int, last: int, cache: Path, min_pt: float) -> dict[str, np.ndarray]:
    parts = [file_rows(data / "lhco_qcd" / f"lhco_qcd_{i:04d}.root", cache, min_pt)
             for i in range(first, last + 1)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def template(model: Path, rows: dict[str, np.ndarray], *, seed: int, copies: int
             ) -> tuple[np.ndarray, int]:
    """The sampler's rows for each given event, as the resonant processor draws them."""
    import onnxruntime as ort

    from coffea_ad.inference.contract import ModelContract
    from coffea_ad.inference.noise import event_normals

    spath = model.with_name(model.stem + "_sampler.onnx")
    got = list(ModelContract.read(model.with_suffix(".json")).input("features").features)
    if got != NAMES:
        raise SystemExit(f"{model}: expected features {NAMES}, found {got}")
    contract = ModelContract.read(spath.with_suffix(".json"))
    width = int(contract.input("noise").shape[0])
    noise = event_normals(seed, rows["id_run"], rows["id_luminosityBlock"], rows["id_event"],
                          width=width, copies=copies)
    cond = np.repeat(rows["mjj"].astype(np.float32)[:, None], copies, axis=0)
    sess = ort.InferenceSession(str(spath), providers=["CPUExecutionProvider"])
    return sess.run(None, {"noise": noise, "condition": cond})[0], width


def main() -> None:
    from coffea_ad.stats.weak import kfold_classifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, nargs="+", default=[Path("models/lhco_cvae.onnx")])
    ap.add_argument("--data", type=Path, default=Path("/work/data/lhco/r1"))
    ap.add_argument("--files", type=int, nargs=2, default=[450, 499], metavar=("FIRST", "LAST"))
    ap.add_argument("--cache", type=Path, default=Path("/work/data/cvae/cache"))
    ap.add_argument("--min-pt", type=float, default=300.0)
    ap.add_argument("--sr", type=float, nargs=2, default=[3300.0, 3700.0])
    ap.add_argument("--oversample", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = load(args.data, *args.files, args.cache, args.min_pt)
    sr = (rows["mjj"] >= args.sr[0]) & (rows["mjj"] <= args.sr[1])
    srows = {k: v[sr] for k, v in rows.items()}
    x = srows["x"]
    n = len(x)
    t_load = time.perf_counter() - t0
    print(f"lhco_qcd files {args.files[0]}-{args.files[1]}: {len(rows['mjj'])} rows with two "
          f"jets p_T > {args.min_pt:g} GeV, {n} in the SR [{args.sr[0]:g}, {args.sr[1]:g}] GeV "
          f"({t_load:.0f} s)")
    print(f"fidelity AUC: template ({args.oversample} per SR event, event_normals seed "
          f"{args.seed}) vs true SR background, {args.folds}-fold HistGradientBoosting, out of "
          f"fold; spread for a perfect template about "
          f"{np.sqrt((1 + args.oversample) / (12 * args.oversample * n)):.4f}")
    results = {}
    for model in args.model:
        t1 = time.perf_counter()
        t, width = template(model, srows, seed=args.seed, copies=args.oversample)
        res = kfold_classifier(t, x, k=args.folds, seed=args.seed)
        out_of_range = float(np.mean((t[:, [1, 2, 4, 5]] < 0) | (t[:, [1, 2, 4, 5]] > 1))
                             + np.mean(t[:, [0, 3]] < 0))
        means = " ".join(f"{nm}={a:.3g}/{b:.3g}" for nm, a, b in
                         zip(NAMES, t.mean(0), x.mean(0), strict=True))
        stds = " ".join(f"{nm}={a:.3g}/{b:.3g}" for nm, a, b in
                        zip(NAMES, t.std(0), x.std(0), strict=True))
        print(f"  {model}: AUC = {res.auc:.4f} (noise width {width}; "
              f"{time.perf_counter() - t1:.0f} s)\n    means template/data: {means}\n"
              f"    std template/data: {stds}\n    template rows outside the physical range "
              f"(tau < 0 or > 1, mass < 0; per column, summed): {out_of_range:.4f}", flush=True)
        results[str(model)] = round(res.auc, 4)
    print(json.dumps({"n_sr": n, "files": args.files, "auc": results}))


if __name__ == "__main__":
    main()
