"""``coffea-ad generate``: PFNano-format samples with Pythia 8 + FastJet (thin over coffea_ad.samples)."""

from __future__ import annotations

import json

import click

from coffea_ad.cli import parse_settings

__all__ = ["generate"]


def _process_help() -> str:
    # imported lazily by the CLI group; the registry itself needs no optional dependency
    from coffea_ad.samples.generate import RECIPES
    from coffea_ad.samples.processes import PROCESSES

    procs = "; ".join(f"{name}: {spec.description}" for name, spec in PROCESSES.items())
    recipes = "; ".join(f"{name}: {desc}" for name, (desc, _) in RECIPES.items())
    return f"{procs}. Recipes (several datasets in one call): {recipes}"


@click.command(
    "generate",
    epilog="Processes: " + _process_help(),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("process")
# --events, --seed and --out are required for generating, not for --show-settings (checked
# in the body: click cannot make an option's requirement depend on another flag)
@click.option("--events", "-n", type=click.IntRange(min=1), default=None,
              help="Number of events (required unless --show-settings).")
@click.option("--seed", "-s", type=click.IntRange(min=0), default=None,
              help="Master seed, >= 0 (same seed, same files; required unless --show-settings).")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Output folder (required unless --show-settings).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (files are generated in parallel).")
@click.option("--events-per-file", type=click.IntRange(min=1), default=None,
              help="Events per file (default 5000).")
@click.option("--dataset", default=None, help="Dataset name in fileset.json (default: PROCESS).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Override a process setting, e.g. --set rinv=0.5 --set detector.track_pt_min=1.")
@click.option("--show-settings", is_flag=True, help="Print the resolved settings and exit.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
def generate(
    process: str,
    events: int | None,
    seed: int | None,
    out: str | None,
    jobs: int,
    events_per_file: int | None,
    dataset: str | None,
    settings: tuple[str, ...],
    show_settings: bool,
    progress: bool,
) -> None:
    """Generate PROCESS events into OUT/<dataset>/*.root and merge OUT/fileset.json.

    PROCESS may also be a recipe (e.g. ``lhco``): several datasets in one call, EVENTS sizing
    the background (the recipe's help line says how the others follow); --set is not accepted
    with a recipe, whose settings are fixed.

    A rerun with the same arguments skips the files that are already complete (verified by
    checksum and entry count) and regenerates the others.
    """
    from coffea_ad.errors import UnknownNameError
    from coffea_ad.samples import generate as run_generate
    from coffea_ad.samples.generate import RECIPES, generate_fileset, recipe_requests
    from coffea_ad.samples.processes import resolve_settings

    if process in RECIPES:
        if settings or dataset:
            raise click.UsageError(f"recipe {process!r} takes no --set or --dataset (its settings are fixed)")
        requests = recipe_requests(process, events, events_per_file)
        if show_settings:
            click.echo(json.dumps({k: {**r, "settings": resolve_settings(r["process"], r.get("settings"))}
                                   for k, r in requests.items()}, indent=1))
            return
        fileset = generate_fileset(requests, out=out, seed=seed, jobs=jobs, progress=progress)
        _echo(fileset)
        return
    overrides = parse_settings(settings)
    try:
        resolved = resolve_settings(process, overrides)
    except (UnknownNameError, TypeError, ValueError) as err:
        raise click.UsageError(str(err)) from err
    if show_settings:
        click.echo(json.dumps(resolved, indent=1))
        return
    missing = [opt for opt, value in (("--events", events), ("--seed", seed), ("--out", out))
               if value is None]
    if missing:
        raise click.UsageError(f"Missing option(s) {', '.join(missing)} (needed to generate; "
                               "only --show-settings runs without them)")
    fileset = run_generate(
        process, events=events, seed=seed, out=out, settings=overrides, jobs=jobs,
        events_per_file=events_per_file, progress=progress, dataset=dataset,
    )
    _echo(fileset)


def _echo(fileset: dict) -> None:
    for name, entry in fileset.items():
        meta = entry["metadata"]
        click.echo(
            f"{name}: {meta['nevents']} events in {len(entry['files'])} file(s), "
            f"xsec = {meta['xsec']:.4g} pb, sumw = {meta['sumw']:.6g}"
        )
