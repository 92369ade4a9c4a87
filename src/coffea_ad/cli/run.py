"""``coffea-ad run``: a registered processor over a fileset, outputs as hist + ROOT, and the
run's provenance (per-file entries held and processed, versions, model sha256) in run.json,
written as one set (see :mod:`coffea_ad.rundir`). Every option is checked before any event
is read: a bad one is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click

__all__ = ["run"]


#: Processor settings implied by ``--schema`` (applied when the processor takes them and the
#: user did not --set them).
SCHEMA_DEFAULTS: dict[str, dict[str, str]] = {
    "treemaker": {"jets": "JetsAK8"},
    "scouting": {"jets": "ScoutingFatJet", "met": "ScoutingMET"},
}


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
                      overrides: dict[str, object], options: dict[str, object],
                      resolved: dict[str, object] | None = None,
                      config_file: dict[str, object] | None = None) -> dict[str, object]:
    """Everything that decided a run's numbers, for run.json: the command line, the
    processor's settings (every plain attribute, so defaults too, e.g. ``tag_threshold``,
    ``lumi_fb``, cuts), the resolved configuration (every constructor setting: its default,
    else the config file's value, else ``--set``'s, typed), the config file, the model (path,
    sha256, contract summary) and the executor options (package versions are run.json's
    ``versions``). ``coffea-ad report`` prints it at the top of the page."""
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
                      "settings": fingerprint["params"], "set_on_command_line": overrides,
                      "resolved": _json_safe(resolved or {}),
                      "config_file": _json_safe(config_file)},
        "model": {"path": str(Path(model).resolve()), "sha256": file_sha256(model),
                  "contract": contract},
        "executor": json.loads(json.dumps(options, default=str)),
    }


def _json_safe(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


def resolve_processor_settings(cls: type, *, processor_name: str, config_file: str | None,
                               settings: tuple[str, ...]
                               ) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """``(given, resolved, file_values)``: the settings from ``--config`` then ``--set``, typed
    by the processor's constructor annotations (:func:`coffea_ad.config.processor_settings`),
    and every setting with its default filled in; a bad key or value is a usage error."""
    import math

    from coffea_ad.config import ConfigError, load_config_file, processor_settings, resolve_settings
    from coffea_ad.errors import UnknownNameError

    defaults, types, other_keys = processor_settings(cls)
    try:
        file_values = load_config_file(config_file) if config_file else {}
        given = resolve_settings(defaults, file_values=file_values, overrides=settings,
                                 what=f"{processor_name} setting", types=types,
                                 other_keys=other_keys)
    except (ConfigError, UnknownNameError) as err:
        raise click.BadParameter(str(err), param_hint="--set/--config") from None
    raw = dict(pair.split("=", 1) for pair in settings)
    for key, value in given.items():
        # NaN compares false with everything: a NaN cut silently selects nothing (or all)
        if isinstance(value, float) and (math.isnan(value) or (
                math.isinf(value) and "threshold" in key)):
            shown = raw.get(key, value)
            raise click.BadParameter(f"{key}={str(shown).strip()}: expected a finite number",
                                     param_hint="--set")
    return given, {**defaults, **given}, dict(file_values)


def _scheduler_address(scheduler: str) -> str:
    """The address of ``--scheduler`` (an address, or a scheduler JSON file)."""
    path = Path(scheduler)
    if "://" not in scheduler and path.is_file():
        try:
            return str(json.loads(path.read_text())["address"])
        except (ValueError, KeyError, TypeError) as err:
            raise click.BadParameter(f"{scheduler} is not a Dask scheduler JSON file with an "
                                     f"'address' ({err})", param_hint="--scheduler") from None
    return scheduler


def check_scheduler(scheduler: str, *, timeout: float = 5.0) -> None:
    """Refuse an unreachable scheduler at once (a TCP connect with ``timeout``), instead of
    Dask's own wait. Protocols other than tcp/tls are left to Dask."""
    import socket
    from urllib.parse import urlsplit

    address = _scheduler_address(scheduler)
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise click.BadParameter(f"{scheduler!r}: expected tcp://HOST:PORT or a scheduler "
                                 "JSON file", param_hint="--scheduler")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise click.BadParameter(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({err}); "
            "expected a running scheduler", param_hint="--scheduler") from None


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _check_options(ctx: click.Context, *, executor: str, scheduler: str | None,
                   task_res: dict[str, float], worker_res: dict[str, float]) -> None:
    """Options that cannot work together, refused before any file is opened (exit 2)."""
    dask_like = executor in ("dask", "dask-awkward")
    if not dask_like:
        for name, flag in (("scheduler", "--scheduler"), ("resources", "--resources"),
                           ("worker_resources", "--worker-resources")):
            if _given(ctx, name):
                raise click.UsageError(f"{flag} applies to --executor dask or dask-awkward, "
                                       f"not {executor}")
    if executor == "dask-awkward":
        # the whole graph is built and computed at once: no per-chunk checkpoint, cap or
        # retry loop exists there to honour these
        for name, flag in (("checkpoint_dir", "--checkpoint"), ("maxchunks", "--maxchunks"),
                           ("retries", "--retries"), ("resources", "--resources")):
            if _given(ctx, name):
                raise click.UsageError(
                    f"{flag} is not supported by --executor dask-awkward (one dask.compute "
                    "of the whole graph); use --executor dask, which honours it")
    if scheduler is not None and _given(ctx, "worker_resources"):
        raise click.UsageError("--worker-resources configures a new LocalCluster; with "
                               "--scheduler start the workers with --resources instead")
    if dask_like and scheduler is None and task_res:
        short = {k: v for k, v in task_res.items() if worker_res.get(k, 0.0) < v}
        if short:
            want = ", ".join(f"{k}={v:g}" for k, v in short.items())
            raise click.UsageError(
                f"--resources {want}: no worker of the new LocalCluster has it, so no chunk "
                f"could ever run; expected --worker-resources {want} (or at least that much)")
    if scheduler is not None and dask_like:
        check_scheduler(scheduler)


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
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="LocalCluster / process-pool workers.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads per LocalCluster worker.")
@click.option("--chunksize", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Target entries per chunk.")
@click.option("--maxchunks", type=click.IntRange(min=1), default=None,
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
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries of a failed chunk.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar.")
@click.option("--schema", type=click.Choice(["pfnano", "nanoaod", "treemaker", "scouting"]),
              default="pfnano",
              show_default=True, help="NanoEvents schema of the input files.")
@click.option("--config", "config_file", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="TOML or YAML file of processor settings (applied before --set).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Processor setting, e.g. --set tag_threshold=0.5 (repeatable; typed by the "
                   "processor's arguments; lists as a,b or JSON, mappings as k=v,k2=v2).")
@click.option("--nonfinite", type=click.Choice(["raise", "flag"]), default="raise",
              show_default=True,
              help="NaN/inf model inputs or scores: fail the run, or score those rows -1 "
                   "(never anomalous) and count them per dataset in cutflow.json and run.json "
                   "(svj, bumphunt; Runner executors).")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing OUT (the old set stays until the new one is complete).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
@click.pass_context
def run(ctx: click.Context, processor_name: str, fileset: str, model: str, executor: str,
        scheduler: str | None, workers: int, threads: int, chunksize: int,
        maxchunks: int | None, skip_bad_files: bool, checkpoint_dir: str | None,
        resources: tuple[str, ...], worker_resources: tuple[str, ...], retries: int,
        progress: bool, schema: str, config_file: str | None, settings: tuple[str, ...],
        nonfinite: str,
        overwrite: bool, out: str) -> None:
    """Run PROCESSOR (e.g. svj) over a fileset and write OUT as one set: histograms.json
    (hist), histograms.root, cutflow.json and run.json (entries held and processed per file,
    versions, model sha256, providers, sha256 of the files beside it)."""
    import warnings

    from coffea.nanoevents import (
        NanoAODSchema,
        PFNanoAODSchema,
        ScoutingNanoAODSchema,
        TreeMakerSchema,
    )

    from coffea_ad.errors import CoffeaADError, InvalidArgumentError, UnknownNameError
    from coffea_ad.execution import (
        RUN_INFO_KEY,
        IncompleteRunError,
        SkippedFilesWarning,
        dask_client,
        run_processor,
    )
    from coffea_ad.fileset import dedupe_files, read_fileset
    from coffea_ad.processors import get_processor
    from coffea_ad.rundir import check_writable, write_failed_run, write_run_dir
    from coffea_ad.schemas import schema_for

    # ---- everything a user can get wrong is checked here, before any event is read
    outdir = Path(out)
    try:
        cls = get_processor(processor_name)
    except (UnknownNameError, ImportError, TypeError) as err:
        raise click.BadParameter(str(err), param_hint="PROCESSOR") from None
    try:
        files, duplicates = dedupe_files(read_fileset(fileset))
    except CoffeaADError as err:
        raise click.BadParameter(str(err), param_hint="--fileset") from None
    for message in duplicates:
        click.echo(f"WARNING: {message}", err=True)
    task_res = _resources(resources, "--resources")
    worker_res = _resources(worker_resources, "--worker-resources")
    _check_options(ctx, executor=executor, scheduler=scheduler, task_res=task_res,
                   worker_res=worker_res)
    overrides, resolved, file_values = resolve_processor_settings(
        cls, processor_name=processor_name, config_file=config_file, settings=settings)
    import inspect as _inspect

    accepted = _inspect.signature(cls).parameters
    # each format's jet collection and MET, unless the user set them: TreeMaker stores AK8
    # jets as JetsAK8, scouting NanoAOD as ScoutingFatJet with ScoutingMET
    for key, value in SCHEMA_DEFAULTS.get(schema, {}).items():
        if key in accepted and key not in overrides:
            overrides[key] = resolved[key] = value
    if nonfinite != "raise":
        if executor == "dask-awkward":
            raise click.UsageError("--nonfinite flag is counted per chunk on the Runner "
                                   "executors; --executor dask-awkward needs --nonfinite raise")
        options_given: dict[str, object] = dict(
            cast("dict[str, object]", overrides.get("scorer_options") or {}))
        overrides["scorer_options"] = options_given | {"nonfinite": nonfinite}
        resolved["scorer_options"] = overrides["scorer_options"]
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
    except ValueError as err:  # a setting of the right name but a bad value
        if isinstance(err, CoffeaADError) and not isinstance(err, InvalidArgumentError):
            raise  # a model/contract problem: one line from the CLI group
        raise click.BadParameter(f"processor {processor_name!r}: {err}",
                                 param_hint="--set") from err

    try:
        check_writable(outdir, overwrite=overwrite)
    except CoffeaADError as err:
        raise click.UsageError(str(err)) from None

    options = {"executor": executor, "workers": workers, "threads": threads,
               "chunksize": chunksize, "maxchunks": maxchunks, "skipbadfiles": skip_bad_files,
               "progress": progress, "checkpoint_dir": checkpoint_dir,
               "resources": task_res or None, "retries": retries,
               # generated samples: a schema that looks only for the cross-references the
               # files carry (coffea's warned ~40 times per chunk about absent collections)
               "schema": schema_for(files, {"pfnano": PFNanoAODSchema, "nanoaod": NanoAODSchema,
                                            "treemaker": TreeMakerSchema,
                                            "scouting": ScoutingNanoAODSchema}[schema])}
    attempted = {"processor": f"{cls.__module__}.{cls.__qualname__}", "fileset": files,
                 "executor": {k: v for k, v in options.items() if k != "schema"}
                 | {"scheduler": scheduler}, "settings": overrides}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SkippedFilesWarning)
            if executor in ("dask", "dask-awkward") and scheduler is None and worker_res:
                with dask_client(workers=workers, threads=threads,
                                 worker_resources=worker_res) as client:
                    result = run_processor(files, proc, client=client, **options)
            else:
                result = run_processor(files, proc, scheduler=scheduler, **options)
    except IncompleteRunError as err:
        where = write_failed_run(outdir, {**attempted, **err.run_info}, str(err),
                                 overwrite=overwrite)
        raise click.ClickException(f"{err}\n(run record: {where})") from None
    except Exception as err:
        # a chunk that cannot be read, a missing branch, a worker lost for good...: the
        # failure is recorded (what was attempted, the error), then reported in one line
        from coffea_ad.cli import error_line

        where = write_failed_run(outdir, attempted, error_line(err), overwrite=overwrite)
        if ctx.find_root().params.get("debug"):
            raise
        raise click.ClickException(
            f"{error_line(err)} (run record: {where}; coffea-ad --debug ... shows the "
            "traceback)") from err
    for warning in caught:
        if issubclass(warning.category, SkippedFilesWarning):
            click.echo(f"WARNING: {warning.message}", err=True)
    info = result.pop(RUN_INFO_KEY)
    info["configuration"] = run_configuration(
        proc, processor_name=processor_name, model=model, overrides=overrides,
        options={**options, "schema": options["schema"].__name__, "scheduler": scheduler,
                 "worker_resources": worker_res or None},
        resolved=resolved,
        config_file={"path": str(Path(config_file).resolve()), "values": file_values}
        if config_file else None)
    info["settings"] = _json_safe(overrides)
    counted = result.get("nonfinite_scores")
    if counted is not None:
        info["nonfinite_scores"] = counted
        if any(counted.values()):
            click.echo(f"WARNING: rows with NaN/inf scores, scored -1 (--nonfinite flag): "
                       f"{counted}", err=True)
    if duplicates:
        info["duplicate_files_dropped"] = duplicates
    write_run_dir(outdir, result, info, overwrite=overwrite)
    click.echo(f"processed {info['entries_processed']} of {info['entries']} entries in "
               f"{len(info['files'])} files ({info.get('chunks_from_checkpoint', 0)} chunks "
               f"from checkpoints)")
    click.echo(f"wrote {outdir}: {', '.join(sorted(info_files(outdir)))}")


def info_files(outdir: Path) -> list[str]:
    return [p.name for p in outdir.iterdir()]
