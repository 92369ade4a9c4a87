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


def template_plots(hists: Mapping[str, Any], out: Path, *, region: int = 1,
                   label: Any = None) -> list[str]:
    """Data vs cVAE template per feature in one m_jj region (resonant processor output)."""
    import hist

    from coffea_ad.plotting.distributions import cms_figure, save_figure
    from coffea_ad.plotting.labels import PlotLabel

    hep = require("mplhep", purpose="CMS-style plots")
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
        (label or PlotLabel()).draw(ax)
        png = f"template_{name.removeprefix('feature_')}.png"
        save_figure(fig, out / png, formats=("pdf",))
        written.append(png)
    return written


def classifier_lines(res: Mapping[str, Any], out: Path, *, plots: bool,
                     label: Any = None) -> list[str]:
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

            plot_roc_sic(res["curves"], out / "sr_classifier_roc_sic.png", label=label,
                         formats=("pdf",))
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


def cut_on_edge(h: Any, axis: str, cut: float | None, option: str, *, snap: bool,
                notes: list[str]) -> float | None:
    """``cut`` when it is a bin edge of ``h``'s ``axis``; otherwise the nearest edge (with
    ``snap``, said in ``notes``) or a :class:`ReportInputError` naming the edges around it.
    A cut between edges would otherwise split bins whose events cannot be split."""
    from coffea_ad.stats.abcd import snap_to_edge

    if cut is None or axis not in h.axes.name:
        return cut  # write_report names what is missing
    edges = np.asarray(h.axes[axis].edges, dtype=np.float64)
    edge = snap_to_edge(h.axes[axis], cut)
    if np.isclose(edge, cut, rtol=1e-9, atol=1e-12):
        return cut
    around = [float(f"{e:.6g}") for e in (*edges[edges <= cut][-1:], *edges[edges > cut][:1])]
    if not snap:
        raise ReportInputError(
            f"{option} {cut:g} is not a bin edge of the {axis!r} axis; nearest edges: "
            f"{around} (pass one of them, or --snap-cuts to move the cut there)")
    notes.append(f"{option} {cut:g} is not a bin edge of the {axis!r} axis: the ABCD regions "
                 f"use {edge:.6g}, the nearest edge (edges around it: {around})")
    return edge


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
    sqrt_s: float | None = None,
    title: str | None = None,
    plots: bool = True,
    out: str | Path | None = None,
    cms_label: str = "Private Work",
    snap_cuts: bool = False,
    notes: list[str] | None = None,
) -> tuple[Path, int]:
    """Write the report of a run folder (``histograms.coffea``, ``run.json``): ``report.md``
    and ``report.html`` (one self-contained page, figures embedded), every figure as PNG and
    PDF. The page opens with the plot label and the run configuration.

    The plots are labelled from run.json's fileset (:func:`coffea_ad.plotting.labels.
    label_for_fileset`: generated samples never get a CMS label); the yields are events at
    the run's ``lumi_fb`` when it had one, else sums of generator weights (no sigma then).

    Args:
        run_dir: what ``coffea-ad run ... -o RUN_DIR`` wrote.
        backgrounds, signals: dataset roles (default: from ``is_signal`` in the fileset
            metadata recorded in run.json).
        names: event histograms to report (default: all those with a category axis).
        systematic, abcd_x_cut, abcd_y_axis, abcd_y_cut, abcd_y_pass, plots: as in
            :func:`~coffea_ad.report.write_report`.
        sqrt_s: centre-of-mass energy (GeV) of the dijet function and the label (default:
            the generator's ``ecm`` setting, else 13600).
        title: page title (default: from the run).
        out: report folder (default: ``RUN_DIR/report``).
        cms_label: text after "CMS" on plots of CMS files.
        snap_cuts: move ABCD cuts that are not bin edges to the nearest edge instead of
            refusing them.
        notes: a list that receives one line per adjustment made (a moved cut).

    Returns:
        ``(path of the main report.md, number of histogram pages)``.

    Raises:
        FileNotFoundError: no ``histograms.coffea`` in ``run_dir``.
        ReportInputError: a named histogram or dataset is not in the run, no event
            histogram is, or an ABCD cut is not a bin edge (without ``snap_cuts``).
    """
    from coffea.util import load

    from coffea_ad.plotting.labels import dataset_styles, label_for_fileset
    from coffea_ad.report.config import configuration_lines, run_lumi_fb
    from coffea_ad.report.html import write_html

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
    notes = notes if notes is not None else []
    lumi_fb = run_lumi_fb(info)
    label = label_for_fileset(info.get("fileset"), cms_text=cms_label, lumi_fb=lumi_fb,
                              com_tev=None if sqrt_s is None else sqrt_s / 1000.0)
    sqrt_s = label.com_tev * 1000.0
    all_datasets = list(dict.fromkeys(
        [*(info.get("fileset") or {})] + [d for n in chosen for d in hists[n].axes["dataset"]]))
    styles = dataset_styles(all_datasets, info.get("fileset"))
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
        x_cut, y_cut = abcd_x_cut, abcd_y_cut
        if abcd_y_axis is not None:
            x_cut = cut_on_edge(h, "score", abcd_x_cut, "--abcd-x-cut", snap=snap_cuts,
                                notes=notes)
            y_cut = cut_on_edge(h, abcd_y_axis, abcd_y_cut, "--abcd-y-cut", snap=snap_cuts,
                                notes=notes)
        path, _ = write_report(
            h, where, backgrounds=bkg, signals=sig, systematic=systematic,
            abcd_x_cut=x_cut, abcd_y_axis=abcd_y_axis, abcd_y_cut=y_cut,
            abcd_y_pass=abcd_y_pass,
            sqrt_s=sqrt_s, title=page_title if i == 0 else f"{page_title}: {name}",
            plots=plots, lumi_fb=lumi_fb, label=label, styles=styles)
        pages.append((name, path))

    main = pages[0][1]
    head, _, body = main.read_text().partition("\n")
    # what produced the numbers comes first: label, notes (moved cuts), run configuration
    lines = [head, "", f"*{label.left_text()}, {label.right_text()}*", ""]
    lines += [f"> **Note:** {n}" for n in notes] + ([""] if notes else [])
    lines += configuration_lines(info)
    lines += [body.strip(), ""]
    if len(pages) > 1:
        lines += ["## Other histograms", ""]
        lines += [f"- [{name}]({path.relative_to(outdir).as_posix()})" for name, path in pages[1:]]
        lines.append("")
    if plots and any(n.startswith("feature_") for n in hists):
        pngs = template_plots(hists, outdir, label=label)
        lines += ["## Signal region: data vs cVAE template", ""]
        lines += [f"![{png}]({png})" for png in pngs]
        lines.append("")
    arrays = result.get("arrays")
    if resonant and arrays:
        _, sig = dataset_roles(list(arrays), info.get("fileset"), backgrounds=backgrounds,
                               signals=signals)
        try:
            lines += classifier_lines(sr_classifier(arrays, sig), outdir, plots=plots,
                                      label=label)
        except ValueError as err:
            lines += ["## Signal region: classifier data vs cVAE template", "",
                      f"not run: {err}", ""]
    cutflow = result.get("cutflow")
    if cutflow:
        lines += cutflow_lines(cutflow)
    atomic_write_text(main, "\n".join(lines))
    for k, (name, path) in enumerate(pages):
        write_html(path, title=page_title if k == 0 else f"{page_title}: {name}")
    return main, len(pages)
