"""``coffea-ad report OUT``: the statistics and CMS-style plots of a ``coffea-ad run`` output.

Reads the run directory through :func:`coffea_ad.rundir.read_run_dir` (every file checked
against the sha256 in ``OUT/run.json``; histograms from hist's JSON serialisation, arrays from
npz: no pickle is loaded) and ``OUT/run.json`` (processor, fileset metadata for the dataset
roles, models),
writes ``OUT/report/report.md`` with its PNG plots: per event histogram (every histogram with
``dataset``, ``category``, ``score`` and an ``mt`` or ``mjj`` axis) the page of
:func:`coffea_ad.stats.write_report` (yields, AUC / max SIC / σ per signal, ABCD closure on
request, bump hunt per category for m_jj), then the cutflow and the run's provenance, and for
the resonant processor the signal region alone, the data-versus-cVAE-template feature plots
and a data-vs-template classifier with its SIC per signal. Thin over
:mod:`coffea_ad.stats.report` and :mod:`coffea_ad.plotting`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

__all__ = ["dataset_roles", "event_histograms", "report", "sr_classifier"]

_MASS_AXES = ("mt", "mjj")


def event_histograms(hists: Mapping[str, Any], *, need_category: bool = True) -> list[str]:
    """Names of the histograms :func:`coffea_ad.stats.write_report` can read: axes
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
        click.UsageError: a named dataset is not in the histograms, or no background is left.
    """
    for name in (*backgrounds, *signals):
        if name not in datasets:
            raise click.UsageError(f"dataset {name!r} is not in the histograms; they hold "
                                   f"{sorted(datasets)}")
    if backgrounds or signals:
        sig = list(signals)
        bkg = list(backgrounds) or [d for d in datasets if d not in sig]
    else:
        meta = {d: ((fileset or {}).get(d) or {}).get("metadata") or {} for d in datasets}
        sig = [d for d in datasets if meta[d].get("is_signal")]
        bkg = [d for d in datasets if d not in sig]
    if not bkg:
        raise click.UsageError(f"no background dataset among {sorted(datasets)}: name them "
                               "with --background")
    return bkg, sig


def _template_plots(hists: Mapping[str, Any], out: Path, *, region: int = 1) -> list[str]:
    """Data vs cVAE template per feature in one m_jj region (resonant processor output)."""
    import hist
    import numpy as np

    from coffea_ad._optional import require
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


def sr_classifier(
    arrays: Mapping[str, Mapping[str, Any]],
    signals: Sequence[str],
    *,
    folds: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Classifier of data versus the cVAE template in the signal region (CATHODE strategy,
    Hallin et al., arXiv:2109.00546), from the resonant processor's ``arrays``.

    "Data" is every dataset's signal-region rows (features and m_jj); the template is the
    cVAE samples drawn at the same m_jj. A gradient-boosted classifier
    (``sklearn.ensemble.HistGradientBoostingClassifier``) is trained ``folds``-fold, each data
    row scored by the fold that did not see it; its score then separates the signal datasets'
    rows from the others (truth labels the classifier never saw).

    Returns:
        ``{"auc_data_vs_template", "n_data", "n_template", "curves": {signal: (fpr, tpr)},
        "signals": {signal: {"auc", "max_sic", "max_sic_tpr", "max_sic_fpr"}}}``.

    Raises:
        ValueError: no template rows (the run had no sampler) or too few rows to split.
    """
    import numpy as np

    from coffea_ad._optional import require
    from coffea_ad.stats import auc, max_sic, roc_curve

    ensemble = require("sklearn.ensemble", purpose="the signal-region classifier")
    selection = require("sklearn.model_selection", purpose="the signal-region classifier")

    def rows(kind: str, names: Sequence[str]) -> tuple[Any, Any, Any]:
        def col(n: str, name: str) -> np.ndarray:
            value = arrays[n][name]  # numpy (run directory) or a coffea column_accumulator
            return np.asarray(getattr(value, "value", value))

        x = [np.column_stack([col(n, f"{kind}_x"), col(n, f"{kind}_mjj")]) for n in names]
        w = [col(n, f"{kind}_weight") for n in names]
        owner = [np.full(len(v), i) for i, v in enumerate(w)]
        return np.concatenate(x), np.concatenate(w), np.concatenate(owner)

    names = list(arrays)
    xd, wd, owner = rows("data", names)
    xt, wt, _ = rows("cvae", names)
    if len(xt) == 0:
        raise ValueError("no cVAE template rows: run the resonant processor with its sampler")
    if min(len(xd), len(xt)) < 2 * folds:
        raise ValueError(f"too few signal-region rows for {folds} folds: {len(xd)} data, "
                         f"{len(xt)} template")
    x = np.concatenate([xd, xt])
    y = np.concatenate([np.ones(len(xd)), np.zeros(len(xt))])
    # each class carries half the weight, whatever the number of template draws
    w = np.concatenate([wd / wd.sum(), wt / wt.sum()])
    pred = np.zeros(len(x))
    kfold = selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in kfold.split(x, y):
        clf = ensemble.HistGradientBoostingClassifier(max_iter=100, random_state=seed)
        clf.fit(x[train], y[train], sample_weight=w[train])
        pred[test] = clf.predict_proba(x[test])[:, 1]
    out: dict[str, Any] = {
        "auc_data_vs_template": auc(pred[len(xd):], pred[:len(xd)], weights_bkg=wt,
                                    weights_sig=wd),
        "n_data": len(xd), "n_template": len(xt), "curves": {}, "signals": {},
    }
    is_sig = np.isin(owner, [names.index(n) for n in signals if n in names])
    score = pred[:len(xd)]
    for name in signals:
        if name not in names:
            continue
        mine = owner == names.index(name)
        if not mine.any() or not (~is_sig).any():
            continue
        fpr, tpr, _ = roc_curve(score[~is_sig], score[mine], weights_bkg=wd[~is_sig],
                                weights_sig=wd[mine])
        out["curves"][name] = (fpr, tpr)
        entry = {"auc": auc(score[~is_sig], score[mine], weights_bkg=wd[~is_sig],
                            weights_sig=wd[mine])}
        try:
            wp = max_sic(score[~is_sig], score[mine], weights_bkg=wd[~is_sig],
                         weights_sig=wd[mine])
            entry.update(max_sic=wp.sic, max_sic_tpr=wp.tpr, max_sic_fpr=wp.fpr)
        except ValueError:  # too little background left for a SIC within 20 %
            entry.update(max_sic=float("nan"), max_sic_tpr=float("nan"),
                         max_sic_fpr=float("nan"))
        out["signals"][name] = entry
    return out


def _classifier_lines(res: Mapping[str, Any], out: Path, *, plots: bool) -> list[str]:
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


def _cutflow_lines(cutflow: Mapping[str, Mapping[str, Any]]) -> list[str]:
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


@click.command()
@click.argument("run_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
@click.option("--background", "-b", "backgrounds", multiple=True, metavar="DATASET",
              help="Background dataset (repeatable; default: datasets not flagged is_signal).")
@click.option("--signal", "-s", "signals", multiple=True, metavar="DATASET",
              help="Signal dataset (repeatable; default: datasets flagged is_signal).")
@click.option("--histogram", "names", multiple=True, metavar="NAME",
              help="Event histogram to report (repeatable; default: all of them).")
@click.option("--systematic", default="nominal", show_default=True)
@click.option("--abcd-x-cut", type=float, default=None, help="Score cut of the ABCD regions.")
@click.option("--abcd-y-axis", default=None, help="Axis of the second ABCD variable.")
@click.option("--abcd-y-cut", type=float, default=None, help="Cut on the second variable.")
@click.option("--abcd-y-pass", type=click.Choice(["above", "below"]), default="above",
              show_default=True,
              help="Side of the cut in region A (below for the svj |Δη_jj| < 1.5: "
                   "--histogram abcd --abcd-y-axis deta_jj --abcd-y-cut 1.5 --abcd-y-pass below).")
@click.option("--sqrt-s", type=float, default=13600.0, show_default=True,
              help="Centre-of-mass energy of the dijet function (GeV).")
@click.option("--title", default=None, help="Page title (default: from the run).")
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), default=None,
              help="Report folder (default: OUT/report).")
def report(run_dir: str, backgrounds: tuple[str, ...], signals: tuple[str, ...],
           names: tuple[str, ...], systematic: str, abcd_x_cut: float | None,
           abcd_y_axis: str | None, abcd_y_cut: float | None, abcd_y_pass: str, sqrt_s: float,
           title: str | None, plots: bool, out: str | None) -> None:
    """Statistics and plots of a run: writes OUT/report/report.md (with PNGs) from
    OUT/histograms.json, OUT/cutflow.json and OUT/run.json, after checking each file's
    sha256 against run.json (a mixed or failed run directory is refused)."""
    from coffea_ad.errors import InvalidOutputError
    from coffea_ad.rundir import read_run_dir
    from coffea_ad.stats import write_report

    run = Path(run_dir)
    src = run / "histograms.json"
    try:
        # every file's sha256 checked against run.json; nothing unpickled
        result, info = read_run_dir(run)
    except (FileNotFoundError, InvalidOutputError) as err:
        found = sorted(p.name for p in run.iterdir())[:10] if run.is_dir() else []
        raise click.ClickException(f"{err} (found {found})") from None
    hists = result.get("hists", {})
    available = event_histograms(hists)
    readable = event_histograms(hists, need_category=False)
    chosen = list(names) or available
    for name in chosen:
        if name not in readable:
            raise click.UsageError(f"histogram {name!r} is not an event histogram of this run; "
                                   f"event histograms: {readable}")
    if not chosen:
        raise click.ClickException(f"no event histogram (axes dataset, category, score and mt "
                                   f"or mjj) in {src}; histograms: {sorted(hists)}")
    outdir = Path(out) if out is not None else run / "report"
    processor = str(info.get("processor", "")).rsplit(".", 1)[-1] or "run"
    page_title = title or f"coffea-ad report: {processor} ({run.name})"
    resonant = processor == "ResonantProcessor"
    pages: list[tuple[str, Path]] = []
    for i, name in enumerate(chosen):
        h = hists[name]
        if resonant and name == "events":
            # the cVAE score is an anomaly score in the signal region (category 1) only
            import warnings

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
        pngs = _template_plots(hists, outdir)
        lines += ["## Signal region: data vs cVAE template", ""]
        lines += [f"![{png}]({png})" for png in pngs]
        lines.append("")
    arrays = result.get("arrays")
    if resonant and arrays:
        _, sig = dataset_roles(list(arrays), info.get("fileset"), backgrounds=backgrounds,
                               signals=signals)
        try:
            lines += _classifier_lines(sr_classifier(arrays, sig), outdir, plots=plots)
        except ValueError as err:
            lines += ["## Signal region: classifier data vs cVAE template", "",
                      f"not run: {err}", ""]
    cutflow = result.get("cutflow")
    if cutflow:
        lines += _cutflow_lines(cutflow)
    if info:
        lines += ["## Run", "",
                  f"- processor: `{info.get('processor', '?')}`",
                  (f"- entries processed: {info.get('entries_processed', '?')} of "
                   f"{info.get('entries', '?')} (complete: {info.get('complete', '?')})")]
        lines += [f"- model `{Path(p).name}`: sha256 `{h}`"
                  for p, h in (info.get("models") or {}).items()]
        lines.append("")
    main.write_text("\n".join(lines))
    click.echo(f"wrote {main} ({len(pages)} histogram page(s))")
