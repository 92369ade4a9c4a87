"""The embedded default job: generate, train, score on Dask, histogram, plot, summarize.

1. Pythia8 + FastJet samples in PFNano format: QCD dijets to train on (``qcd_train``), an
   independent QCD sample to set the working point on (``qcd_calib``), QCD and a
   semivisible-jet Z' to evaluate on (``qcd``, ``svj``).
2. Jet substructure from the PF constituents (:mod:`coffea_ad.features`), the p_T-conditioned
   flow of the shipped SVJ model (score from -log p(substructure | log p_T), no φ, no η)
   trained on ``qcd_train`` and exported to ONNX with its contract (``training/svj_flow.py``).
3. The tag threshold: the score that tags 10% of the leading jets of ``qcd_calib`` (never
   the training events, which a model scores as more typical than new ones).
4. The ``svj`` processor over ``qcd`` and ``svj`` on a Dask LocalCluster, every AK8 jet scored
   with ONNX Runtime; histograms score × m_T × number of tagged jets × dataset.
5. Outputs: hist (coffea format) and ROOT histograms, PNG plots, ``summary.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad.errors import InvalidArgumentError

__all__ = ["OUTPUT_FILES", "DemoConfig", "jet_auc_from_histogram", "run_demo", "threshold_at_efficiency"]

#: Files the demo writes under ``--out`` (README lists them too).
OUTPUT_FILES: tuple[str, ...] = (
    "samples/fileset.json",
    "models/svj_flow.onnx",
    "models/svj_flow.json",
    "models/svj_flow.md",
    "histograms.coffea",
    "histograms.root",
    "plots/loss.png",
    "plots/loss.pdf",
    "plots/roc.png",
    "plots/roc.pdf",
    "plots/mt_categories.png",
    "plots/mt_categories.pdf",
    "summary.json",
)


@dataclass
class DemoConfig:
    """Sizes and settings of the demo (all settable from ``coffea-ad demo``)."""

    train_events: int = 6000
    bkg_events: int = 4000
    sig_events: int = 3000
    seed: int = 42
    workers: int = 2
    epochs: int = 60
    chunksize: int = 2000
    qcd_pthat_min: float = 400.0
    mzprime: float = 3000.0
    rinv: float = 0.3
    mistag_rate: float = 0.10


def threshold_at_efficiency(h: hist.Hist, efficiency: float) -> float:
    """Score above which a fraction ``efficiency`` of the entries of a 1D score histogram lie
    (upper edge of the first bin where the tail drops to it; flow bins included)."""
    values = h.values(flow=True)
    edges = h.axes[0].edges
    total = values.sum()
    if total <= 0:
        raise InvalidArgumentError("cannot set a working point on an empty histogram")
    tail = np.cumsum(values[::-1])[::-1] / total  # tail[i]: fraction in bins >= i (flow incl.)
    # bins with flow: index 0 = underflow, 1..n = regular, n+1 = overflow; bin i>=1 starts at edges[i-1]
    for i in range(1, len(values)):
        if tail[i] <= efficiency:
            return float(edges[i - 1])
    return float(edges[-1])


def jet_auc_from_histogram(h: hist.Hist, background: str, signal: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Binned jet-level ROC (fpr, tpr) and AUC between two datasets of a dataset × score hist
    (the convention of :func:`coffea_ad.stats.binned_roc`, the same as the report's)."""
    from coffea_ad.stats import binned_roc

    return binned_roc(h[{"dataset": hist.loc(background)}], h[{"dataset": hist.loc(signal)}])


def run_demo(out: str | Path, config: DemoConfig | None = None, *, echo: Any = print) -> dict[str, Any]:
    """Run the whole chain into ``out`` and return the summary (also written as JSON)."""
    from coffea.util import save

    from coffea_ad.execution import dask_client, run_processor
    from coffea_ad.histos import write_root
    from coffea_ad.nn.fit import report_epochs
    from coffea_ad.plotting import plot_mass_by_category, plot_roc, plot_score_distributions
    from coffea_ad.plotting.labels import label_for_fileset
    from coffea_ad.processors.svj import SVJProcessor
    from coffea_ad.samples import generate_fileset
    from coffea_ad.schemas import GeneratedPFNanoAODSchema
    from coffea_ad.training import svj_flow

    cfg = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    echo(f"[1/5] generating samples with Pythia8 + FastJet into {out / 'samples'}")
    qcd = {"process": "qcd", "settings": {"pthat_min": cfg.qcd_pthat_min}}
    fileset = generate_fileset(
        {
            "qcd_train": {**qcd, "events": cfg.train_events},
            "qcd_calib": {**qcd, "events": cfg.bkg_events},
            "qcd": {**qcd, "events": cfg.bkg_events},
            "svj": {"process": "svj", "events": cfg.sig_events,
                    "settings": {"mzprime": cfg.mzprime, "rinv": cfg.rinv}},
        },
        out=out / "samples",
        seed=cfg.seed,
        jobs=cfg.workers,
        progress=True,
    )
    timings["generate_s"] = time.perf_counter() - t0

    echo("[2/5] training the p_T-conditioned flow on qcd_train and exporting it to ONNX")
    t = time.perf_counter()
    train_cfg = dict(svj_flow.CONFIG)
    train_cfg.update(epochs=cfg.epochs, seed=cfg.seed, train_datasets=["qcd_train"],
                     eval_datasets=["svj"])
    def every_fifth(r: Any) -> None:  # feedback without one line per epoch
        if r.epoch % 5 == 0 or r.epoch == 1:
            echo(f"      {r.line()}")

    with report_epochs(every_fifth):
        metrics = svj_flow.run(train_cfg, {"qcd_train": fileset["qcd_train"], "svj": fileset["svj"]},
                               out / "models" / "svj_flow")
    model = out / "models" / "svj_flow.onnx"
    timings["train_s"] = time.perf_counter() - t

    echo(f"[3/5] starting a Dask LocalCluster with {cfg.workers} workers")
    t = time.perf_counter()
    with dask_client(workers=cfg.workers) as client:
        calib = run_processor({"qcd_calib": fileset["qcd_calib"]},
                              SVJProcessor(model, tag_threshold=np.inf), client=client,
                              chunksize=cfg.chunksize, schema=GeneratedPFNanoAODSchema)
        threshold = threshold_at_efficiency(calib["hists"]["jets"][{"dataset": "qcd_calib"}],
                                            cfg.mistag_rate)
        echo(f"      tag threshold (score at {cfg.mistag_rate:.0%} mistag of qcd_calib): "
             f"{threshold:.4g}")
        echo("[4/5] scoring every AK8 jet with ONNX Runtime and filling histograms")
        result = run_processor({k: fileset[k] for k in ("qcd", "svj")},
                               SVJProcessor(model, tag_threshold=threshold), client=client,
                               chunksize=cfg.chunksize, progress=False,
                               schema=GeneratedPFNanoAODSchema)
    timings["process_s"] = time.perf_counter() - t

    echo("[5/5] writing histograms and plots")
    hists = result["hists"]
    save(result, out / "histograms.coffea")
    write_root(hists, out / "histograms.root")
    fpr, tpr, auc_binned = jet_auc_from_histogram(hists["jets"], "qcd", "svj")
    label = label_for_fileset(fileset)  # generated samples: never a CMS label
    plot_score_distributions(hists["jets"], out / "plots" / "loss.png", label=label,
                             formats=("pdf",))
    plot_roc({"flow, svj vs qcd, two leading jets": (fpr, tpr, auc_binned)},
             out / "plots" / "roc.png", label=label, formats=("pdf",))
    plot_mass_by_category(hists["events"], out / "plots" / "mt_categories.png", label=label,
                          formats=("pdf",))

    categories = {
        ds: {int(c): float(hists["events"][{"dataset": ds, "systematic": "nominal",
                                            "category": hist.loc(c)}].sum(flow=True).value)
             for c in hists["events"].axes["category"]}
        for ds in ("qcd", "svj")
    }
    timings["total_s"] = time.perf_counter() - t0
    summary = {
        "auc_jets_leading2": auc_binned,
        "auc_test_training": metrics.get("auc", {}),
        "tag_threshold": threshold,
        "calibration_dataset": "qcd_calib",
        "mistag_rate": cfg.mistag_rate,
        "events_per_category": categories,
        "cutflow": result["cutflow"],
        "entries": result["entries"],
        "providers": result["provider"],
        "config": asdict(cfg),
        "timings": timings,
        "files": list(OUTPUT_FILES),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    echo("")
    echo(f"jet-level AUC, svj vs qcd (two leading AK8 jets): {auc_binned:.3f}")
    for name, value in (metrics.get("auc") or {}).items():
        echo(f"AUC on held-out jets of the training split, {name} vs qcd_train: {value:.3f}")
    for ds, cats in categories.items():
        echo(f"{ds}: weighted events per tag category {cats}")
    echo(f"wall time {timings['total_s']:.0f} s; outputs in {out}")
    return summary
