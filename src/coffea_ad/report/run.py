"""The page of a whole ``coffea-ad run`` output: one :func:`~coffea_ad.report.write_report`
page per event histogram, then the resonant analysis's signal-region template plots and
classifier, the cutflow and the run's provenance."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from coffea_ad._optional import require
from coffea_ad.atomic import atomic_write_text
from coffea_ad.errors import ReportInputError
from coffea_ad.report.classifier import sr_classifier
from coffea_ad.report.page import write_report

__all__ = ["dataset_roles", "event_histograms", "write_run_report"]

_MASS_AXES = ("mt", "mjj")


def event_histograms(hists: Mapping[str, Any], *, need_category: bool = True) -> list[str]:
    """Names of the histograms :func:`coffea_ad.report.write_report` can read: axes
    ``dataset``, ``score``, a mass (``mt`` or ``mjj``) and, unless ``need_category`` is False,
    ``category`` (the ones reported by default); ``"events"`` first."""
    needed = {"dataset", "score"} | ({"category"} if need_category else set())
    names = []
    for name, h in hists.items():
        axes = set(h.axes.name) if hasattr(h, "axes") else set()
        if needed <= axes and axes & set(_MASS_AXES):
            names.append(name)
    return sorted(names, key=lambda n: (n != "events", n))


def dataset_roles(
    datasets: Sequence[str],
    fileset: Mapping[str, Any] | None,
    *,
    backgrounds: Sequence[str] = (),
    signals: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """(backgrounds, signals) among ``datasets``.

    Named roles win; otherwise a dataset is a signal when its fileset metadata says
    ``is_signal`` (as :func:`coffea_ad.samples.generate_fileset` writes it) and a background
    otherwise.

    Raises:
        ReportInputError: a named dataset is not in the histograms, or no background is left.
    """
    for name in (*backgrounds, *signals):
        if name not in datasets:
            raise ReportInputError(f"dataset {name!r} is not in the histograms; they hold "
                                   f"{sorted(datasets)}")
    if backgrounds or signals:
        sig = list(signals)
        bkg = list(backgrounds) or [d for d in datasets if d not in sig]
    else:
        meta = {d: ((fileset or {}).get(d) or {}).get("metadata") or {} for d in datasets}
        sig = [d for d in datasets if meta[d].get("is_signal")]
        bkg = [d for d in datasets if d not in sig]
    if not bkg:
        raise ReportInputError(f"no background dataset among {sorted(datasets)}: name them "
                               "with --background")
    return bkg, sig


def template_plots(hists: Mapping[str, Any], out: Path, *, region: int = 1) -> list[str]:
    """Data vs cVAE template per feature in one m_jj region (resonant processor output)."""
    import hist

    from coffea_ad.plotting.distributions import cms_figure

    hep = require("mplhep", purpose="CMS-style plots")
    plt = require("matplotlib.pyplot", purpose="plots")
    written = []
    for name, h in hists.items():
        if not name.startswith("feature_"):
            continue
        fig, ax = cms_figure(figsize=(8, 7))
        for source, style in (("data", {"histtype": "errorbar", "color": "black"}),
                              ("cvae", {"histtype": "step", "color": "tab:blue"})):
            sub = h[{"dataset": sum, "source": hist.loc(source), "region": hist.loc(region)}]
            vals = sub.values()
            total = vals.sum()
            if total <= 0:
                continue
            err = np.sqrt(sub.variances()) / total if source == "data" else None
            hep.histplot(vals / total, sub.axes[0].edges, ax=ax, yerr=err,
                         label="data" if source == "data" else "cVAE template", **style)
        ax.set_xlabel(h.axes["value"].label)
        ax.set_ylabel("Fraction of events")
        ax.legend()
        hep.cms.label("Preliminary", data=False, ax=ax, loc=0, com=13.6)
        png = f"template_{name.removeprefix('feature_')}.png"
        fig.savefig(out / png, bbox_inches="tight", dpi=110)
        plt.close(fig)
        written.append(png)
    return written


def classifier_lines(res: Mapping[str, Any], out: Path, *, plots: bool) -> list[str]:
    def fmt(v: float) -> str:
        return "n/a" if math.isnan(v) else f"{v:.3g}"

    lines = ["## Signal region: classifier data vs cVAE template", "",
             (f"{res['n_data']} data rows, {res['n_template']} template rows; AUC(data vs "
              f"template) = {res['auc_data_vs_template']:.3f} (0.5: the template describes "
              "the data)."), ""]
    if res["signals"]:
        lines += ["| signal | AUC | max SIC | TPR, FPR at max SIC |", "|---|---|---|---|"]
        for name, e in res["signals"].items():
            lines.append(f"| {name} | {e['auc']:.3f} | {fmt(e['max_sic'])} | "
                         f"{fmt(e['max_sic_tpr'])}, {fmt(e['max_sic_fpr'])} |")
        lines += ["", ("SIC = TPR/√FPR of the classifier score, signal datasets vs the "
                       "others among the data rows; max SIC where the background keeps a "
                       "relative uncertainty ≤ 20 %."), ""]
        if plots:
            from coffea_ad.plotting.stats import plot_roc_sic

            plot_roc_sic(res["curves"], out / "sr_classifier_roc_sic.png")
            lines += ["![SR classifier ROC and SIC](sr_classifier_roc_sic.png)", ""]
    return lines


def cutflow_lines(cutflow: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## Cutflow", ""]
    for dataset, steps in cutflow.items():
        first = None
        lines += [f"### {dataset}", "", "| step | events | of all |", "|---|---|---|"]
        for step, count in steps.items():
            first = count if first is None else first
            frac = f"{count / first:.3g}" if first else "n/a"
            cell = str(step).replace("|", "\\|")  # a literal | would end the table cell
            lines.append(f"| {cell} | {count} | {frac} |")
        lines.append("")
    return lines


def write_run_report(
    run_dir: str | Path,
    *,
    backgrounds: Sequence[str] = (),
    signals: Sequence[str] = (),
    names: Sequence[str] = (),
    systematic: str = "nominal",
    abcd_x_cut: float | None = None,
    abcd_y_axis: str | None = None,
    abcd_y_cut: float | None = None,
    abcd_y_pass: Literal["above", "below"] = "above",
    sqrt_s: float = 13600.0,
    title: str | None = None,
    plots: bool = True,
    out: str | Path | None = None,
) -> tuple[Path, int]:
    """Write the report of a run folder (``histograms.coffea``, ``run.json``).

    Args:
        run_dir: what ``coffea-ad run ... -o RUN_DIR`` wrote.
        backgrounds, signals: dataset roles (default: from ``is_signal`` in the fileset
            metadata recorded in run.json).
        names: event histograms to report (default: all those with a category axis).
        systematic, abcd_x_cut, abcd_y_axis, abcd_y_cut, abcd_y_pass, sqrt_s, plots: as in
            :func:`~coffea_ad.report.write_report`.
        title: page title (default: from the run).
        out: report folder (default: ``RUN_DIR/report``).

    Returns:
        ``(path of the main report.md, number of histogram pages)``.

    Raises:
        FileNotFoundError: no ``histograms.coffea`` in ``run_dir``.
        ReportInputError: a named histogram or dataset is not in the run, or no event
            histogram is.
    """
    from coffea.util import load

    run = Path(run_dir)
    src = run / "histograms.coffea"
    if not src.is_file():
        raise FileNotFoundError(f"expected {src} (what `coffea-ad run ... -o {run}` writes), "
                                f"found {sorted(p.name for p in run.iterdir())}")
    result = load(src)
    hists = result.get("hists", {})
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    available = event_histograms(hists)
    readable = event_histograms(hists, need_category=False)
    chosen = list(names) or available
    for name in chosen:
        if name not in readable:
            raise ReportInputError(f"histogram {name!r} is not an event histogram of this run; "
                                   f"event histograms: {readable}")
    if not chosen:
        raise ReportInputError(f"no event histogram (axes dataset, category, score and mt "
                               f"or mjj) in {src}; histograms: {sorted(hists)}", usage=False)
    outdir = Path(out) if out is not None else run / "report"
    processor = str(info.get("processor", "")).rsplit(".", 1)[-1] or "run"
    page_title = title or f"coffea-ad report: {processor} ({run.name})"
    resonant = processor == "ResonantProcessor"
    pages: list[tuple[str, Path]] = []
    for i, name in enumerate(chosen):
        h = hists[name]
        if resonant and name == "events":
            # the cVAE score is an anomaly score in the signal region (category 1) only
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="List indexing selection")
                h = h[{"category": [1]}]
        bkg, sig = dataset_roles(list(h.axes["dataset"]), info.get("fileset"),
                                 backgrounds=backgrounds, signals=signals)
        where = outdir if i == 0 else outdir / name
        path, _ = write_report(
            h, where, backgrounds=bkg, signals=sig, systematic=systematic,
            abcd_x_cut=abcd_x_cut, abcd_y_axis=abcd_y_axis, abcd_y_cut=abcd_y_cut,
            abcd_y_pass=abcd_y_pass,
            sqrt_s=sqrt_s, title=page_title if i == 0 else f"{page_title}: {name}",
            plots=plots)
        pages.append((name, path))

    main = pages[0][1]
    lines = [main.read_text().rstrip(), ""]
    if len(pages) > 1:
        lines += ["## Other histograms", ""]
        lines += [f"- [{name}]({path.relative_to(outdir).as_posix()})" for name, path in pages[1:]]
        lines.append("")
    if plots and any(n.startswith("feature_") for n in hists):
        pngs = template_plots(hists, outdir)
        lines += ["## Signal region: data vs cVAE template", ""]
        lines += [f"![{png}]({png})" for png in pngs]
        lines.append("")
    arrays = result.get("arrays")
    if resonant and arrays:
        _, sig = dataset_roles(list(arrays), info.get("fileset"), backgrounds=backgrounds,
                               signals=signals)
        try:
            lines += classifier_lines(sr_classifier(arrays, sig), outdir, plots=plots)
        except ValueError as err:
            lines += ["## Signal region: classifier data vs cVAE template", "",
                      f"not run: {err}", ""]
    cutflow = result.get("cutflow")
    if cutflow:
        lines += cutflow_lines(cutflow)
    if info:
        lines += ["## Run", "",
                  f"- processor: `{info.get('processor', '?')}`",
                  (f"- entries processed: {info.get('entries_processed', '?')} of "
                   f"{info.get('entries', '?')} (complete: {info.get('complete', '?')})")]
        lines += [f"- model `{Path(p).name}`: sha256 `{h}`"
                  for p, h in (info.get("models") or {}).items()]
        lines.append("")
    atomic_write_text(main, "\n".join(lines))
    return main, len(pages)
