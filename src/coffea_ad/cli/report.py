"""``coffea-ad report OUT``: the statistics and CMS-style plots of a ``coffea-ad run`` output.

Reads ``OUT/histograms.coffea`` and ``OUT/run.json``, writes ``OUT/report/report.md`` and
``report.html`` (one self-contained page) with every figure as PNG and PDF; the page itself is :func:`coffea_ad.report.write_run_report` (this module only
parses the options).
"""

from __future__ import annotations

import click

from coffea_ad.errors import ReportInputError

__all__ = ["report"]


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
@click.option("--sqrt-s", type=float, default=None,
              help="Centre-of-mass energy (GeV) of the dijet function and the plot label "
                   "(default: the generator's setting, else 13600).")
@click.option("--cms-label", default="Private Work", show_default=True,
              help="Text after 'CMS' on plots of CMS files (generated samples never get a CMS "
                   "label).")
@click.option("--snap-cuts", is_flag=True,
              help="Move ABCD cuts that are not bin edges to the nearest edge (and say so) "
                   "instead of refusing them.")
@click.option("--title", default=None, help="Page title (default: from the run).")
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), default=None,
              help="Report folder (default: OUT/report).")
def report(run_dir: str, backgrounds: tuple[str, ...], signals: tuple[str, ...],
           names: tuple[str, ...], systematic: str, abcd_x_cut: float | None,
           abcd_y_axis: str | None, abcd_y_cut: float | None, abcd_y_pass: str,
           sqrt_s: float | None, cms_label: str, snap_cuts: bool, title: str | None,
           plots: bool, out: str | None) -> None:
    """Statistics and plots of a run: writes OUT/report/report.md and report.html (one
    self-contained page, figures embedded), every figure as PNG and PDF, from
    OUT/histograms.coffea and OUT/run.json (whose configuration heads the page)."""
    from coffea_ad.report import write_run_report

    notes: list[str] = []
    try:
        main, n_pages = write_run_report(
            run_dir, backgrounds=backgrounds, signals=signals, names=names,
            systematic=systematic, abcd_x_cut=abcd_x_cut, abcd_y_axis=abcd_y_axis,
            abcd_y_cut=abcd_y_cut, abcd_y_pass=abcd_y_pass,  # type: ignore[arg-type]
            sqrt_s=sqrt_s, title=title, plots=plots, out=out, cms_label=cms_label,
            snap_cuts=snap_cuts, notes=notes)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    except ReportInputError as err:
        raise (click.UsageError if err.usage else click.ClickException)(str(err)) from None
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {main} and {main.with_suffix('.html')} ({n_pages} histogram page(s))")
