"""``coffea-ad run``: a registered processor over a fileset, outputs as hist + ROOT, and the
run's provenance (per-file entries held and processed, versions, model sha256) in run.json."""

from __future__ import annotations

import json
from pathlib import Path

import click

from coffea_ad.cli import parse_settings

__all__ = ["run"]


def _resources(pairs: tuple[str, ...], option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            out[key.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"expected NAME=NUMBER, got {pair!r}",
                                     param_hint=option) from None
    return out


def run_configuration(proc: object, *, processor_name: str, model: str,
                      overrides: dict[str, object], options: dict[str, object]
                      ) -> dict[str, object]:
    """Everything that decided a run's numbers, for run.json: the command line, the
    processor's settings (every plain attribute, so defaults too, e.g. ``tag_threshold``,
    ``lumi_fb``, cuts), the model (path, sha256, contract summary) and the executor options
    (package versions are run.json's ``versions``). ``coffea-ad report`` prints it at the
    top of the page."""
    import sys

    from coffea_ad.execution import processor_fingerprint
    from coffea_ad.inference.contract import ModelContract, file_sha256, sidecar_path

    fingerprint = processor_fingerprint(proc)
    contract: dict[str, object] = {}
    if sidecar_path(model).is_file():
        c = ModelContract.read(sidecar_path(model))
        contract = {"name": c.name, "kind": c.kind, "level": c.level, "jets": c.jets,
                    "score": c.score, "opset": c.opset,
                    "inputs": {i.name: i.features for i in c.inputs},
                    "outputs": {o.name: o.meaning for o in c.outputs},
                    "metrics": c.metrics, "contract_version": c.contract_version}
    return {
        "command": ["coffea-ad", *sys.argv[1:]],
        "processor": {"name": processor_name, "class": fingerprint["class"],
                      "settings": fingerprint["params"], "set_on_command_line": overrides},
        "model": {"path": str(Path(model).resolve()), "sha256": file_sha256(model),
                  "contract": contract},
        "executor": json.loads(json.dumps(options, default=str)),
    }


@click.command()
@click.argument("processor_name", metavar="PROCESSOR")
@click.option("--fileset", "-f", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Fileset JSON (coffea dataset format).")
@click.option("--model", "-m", required=True, type=click.Path(exists=True, dir_okay=False),
              help="ONNX model (with its sidecar NAME.json).")
@click.option("--executor", type=click.Choice(["iterative", "futures", "dask", "dask-awkward"]),
              default="dask", show_default=True)
@click.option("--scheduler", default=None, help="Address (tcp://host:8786) or scheduler JSON "
              "file of an existing Dask cluster (default: start a LocalCluster).")
@click.option("--workers", type=int, default=2, show_default=True,
              help="LocalCluster / process-pool workers.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Threads per LocalCluster worker.")
@click.option("--chunksize", type=int, default=100_000, show_default=True,
              help="Target entries per chunk.")
@click.option("--maxchunks", type=int, default=None,
              help="At most this many chunks per dataset (quick looks; run.json says so).")
@click.option("--skip-bad-files", is_flag=True,
              help="Skip and report files/chunks that cannot be read instead of failing.")
@click.option("--checkpoint", "checkpoint_dir", type=click.Path(file_okay=False), default=None,
              help="Save each chunk's output here; rerunning resumes without redoing chunks.")
@click.option("--resources", "resources", multiple=True, metavar="NAME=N",
              help="Dask resources each chunk task needs, e.g. --resources GPU=1 so "
              "inference runs on workers started with --resources GPU=1.")
@click.option("--worker-resources", multiple=True, metavar="NAME=N",
              help="Resources the workers of a new LocalCluster declare (e.g. GPU=1).")
@click.option("--retries", type=int, default=3, show_default=True,
              help="Retries of a failed chunk.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar.")
@click.option("--schema", type=click.Choice(["pfnano", "nanoaod", "treemaker"]), default="pfnano",
              show_default=True, help="NanoEvents schema of the input files.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Processor option, e.g. --set tag_threshold=0.5 (repeatable).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
def run(processor_name: str, fileset: str, model: str, executor: str, scheduler: str | None,
        workers: int, threads: int, chunksize: int, maxchunks: int | None,
        skip_bad_files: bool, checkpoint_dir: str | None, resources: tuple[str, ...],
        worker_resources: tuple[str, ...], retries: int, progress: bool,
        schema: str, settings: tuple[str, ...], out: str) -> None:
    """Run PROCESSOR (e.g. svj) over a fileset and write histograms (hist and ROOT) and
    run.json (entries held and processed per file, versions, model sha256, providers)."""
    import warnings

    from coffea.nanoevents import NanoAODSchema, PFNanoAODSchema, TreeMakerSchema
    from coffea.util import save

    from coffea_ad.execution import (
        RUN_INFO_KEY,
        IncompleteRunError,
        SkippedFilesWarning,
        dask_client,
        load_fileset,
        run_processor,
    )
    from coffea_ad.histos import write_root
    from coffea_ad.processors import get_processor
    from coffea_ad.schemas import schema_for

    cls = get_processor(processor_name)
    overrides = parse_settings(settings)
    try:
        proc = cls(model, **overrides)
    except TypeError as err:  # a missing or unknown setting: name the processor's settings
        import inspect

        params = [p for p in inspect.signature(cls).parameters.values()
                  if p.kind is p.KEYWORD_ONLY]
        needed = [p.name for p in params if p.default is p.empty]
        optional = [p.name for p in params if p.default is not p.empty]
        raise click.UsageError(
            f"processor {processor_name!r}: {err}; required --set keys: {needed or 'none'}; "
            f"optional: {optional}"
        ) from err
    task_res = _resources(resources, "--resources")
    worker_res = _resources(worker_resources, "--worker-resources")
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    options = {"executor": executor, "workers": workers, "threads": threads,
               "chunksize": chunksize, "maxchunks": maxchunks, "skipbadfiles": skip_bad_files,
               "progress": progress, "checkpoint_dir": checkpoint_dir,
               "resources": task_res or None, "retries": retries,
               # generated samples: a schema that looks only for the cross-references the
               # files carry (coffea's warned ~40 times per chunk about absent collections)
               "schema": schema_for(load_fileset(fileset),
                                    {"pfnano": PFNanoAODSchema, "nanoaod": NanoAODSchema,
                                     "treemaker": TreeMakerSchema}[schema])}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SkippedFilesWarning)
            if executor in ("dask", "dask-awkward") and scheduler is None and worker_res:
                with dask_client(workers=workers, threads=threads,
                                 worker_resources=worker_res) as client:
                    result = run_processor(fileset, proc, client=client, **options)
            else:
                result = run_processor(fileset, proc, scheduler=scheduler, **options)
    except IncompleteRunError as err:
        (outdir / "run.json").write_text(json.dumps(err.run_info, indent=2, default=str) + "\n")
        raise click.ClickException(f"{err}\n(run record: {outdir / 'run.json'})") from None
    for warning in caught:
        if issubclass(warning.category, SkippedFilesWarning):
            click.echo(f"WARNING: {warning.message}", err=True)
    info = result.pop(RUN_INFO_KEY)
    info["configuration"] = run_configuration(
        proc, processor_name=processor_name, model=model, overrides=overrides,
        options={**options, "schema": options["schema"].__name__, "scheduler": scheduler,
                 "worker_resources": worker_res or None})
    save(result, outdir / "histograms.coffea")
    write_root(result["hists"], outdir / "histograms.root")
    # arrays (e.g. the resonant processor's signal-region rows) live in histograms.coffea only
    meta = {k: v for k, v in result.items() if k not in ("hists", "arrays")}
    (outdir / "cutflow.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (outdir / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    click.echo(f"processed {info['entries_processed']} of {info['entries']} entries in "
               f"{len(info['files'])} files ({info.get('chunks_from_checkpoint', 0)} chunks "
               f"from checkpoints)")
    click.echo(f"wrote {outdir / 'histograms.coffea'}, {outdir / 'histograms.root'}, "
               f"{outdir / 'cutflow.json'}, {outdir / 'run.json'}")
