"""``coffea-ad run``: a registered processor over a fileset, outputs as hist + ROOT."""

from __future__ import annotations

import json
from pathlib import Path

import click

from coffea_ad.cli import parse_settings

__all__ = ["run"]


@click.command()
@click.argument("processor_name", metavar="PROCESSOR")
@click.option("--fileset", "-f", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Fileset JSON (coffea dataset format).")
@click.option("--model", "-m", required=True, type=click.Path(exists=True, dir_okay=False),
              help="ONNX model (with its sidecar NAME.json).")
@click.option("--executor", type=click.Choice(["iterative", "futures", "dask"]), default="dask",
              show_default=True)
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler "
              "(default: start a LocalCluster).")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--chunksize", type=int, default=100_000, show_default=True)
@click.option("--skip-bad-files", is_flag=True, help="Report and skip files that fail to open.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Processor option, e.g. --set tag_threshold=0.5 (repeatable).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
def run(processor_name: str, fileset: str, model: str, executor: str, scheduler: str | None,
        workers: int, threads: int, chunksize: int, skip_bad_files: bool,
        settings: tuple[str, ...], out: str) -> None:
    """Run PROCESSOR (e.g. svj) over a fileset and write histograms (hist and ROOT)."""
    from coffea.util import save

    from coffea_ad.execution import run_processor
    from coffea_ad.histos import write_root
    from coffea_ad.processors import get_processor

    cls = get_processor(processor_name)
    proc = cls(model, **parse_settings(settings))
    result = run_processor(fileset, proc, executor=executor, scheduler=scheduler,
                           workers=workers, threads=threads, chunksize=chunksize,
                           skipbadfiles=skip_bad_files)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    save(result, outdir / "histograms.coffea")
    write_root(result["hists"], outdir / "histograms.root")
    meta = {k: v for k, v in result.items() if k != "hists"}
    (outdir / "cutflow.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    click.echo(f"wrote {outdir / 'histograms.coffea'}, {outdir / 'histograms.root'}, "
               f"{outdir / 'cutflow.json'}")
