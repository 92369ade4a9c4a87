"""``coffea-ad features``: the per-jet feature table of a NanoAOD/PFNano file, as Parquet.

One row per jet with ``run``, ``luminosityBlock``, ``event``, ``jet_index`` and the features of
:data:`coffea_ad.features.JET_FEATURES`, computed by the same code the processors and the
training recipes call.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

__all__ = ["features"]


@click.command()
@click.argument("input_file", metavar="INPUT.root")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write (one row per jet).")
@click.option("--jets", default="FatJet", show_default=True,
              help="Jet collection (FatJet, Jet, ...).")
@click.option("--features", "names", default=None, metavar="NAME,NAME,...",
              help="Comma-separated feature names (default: all; see --list).")
@click.option("--tree", default="Events", show_default=True, help="TTree name.")
@click.option("--nonfinite", type=click.Choice(["raise", "zero"]), default="raise",
              show_default=True, help="NaN/inf in jet branches: fail, or write 0.")
@click.option("--puppi/--no-puppi", default=True, show_default=True,
              help="Weight constituents by PFCands_puppiWeight when the file has it.")
@click.option("--list", "list_only", is_flag=True,
              help="Print the feature names and definitions, then exit.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (never the input).")
def features(input_file: str, output: Path, jets: str, names: str | None, tree: str,
             nonfinite: str, puppi: bool, list_only: bool, overwrite: bool) -> None:
    """Write the per-jet feature table of INPUT.root (NanoAOD or PFNano; a local path or a
    root:// / https:// URL) to a Parquet file."""
    import awkward as ak
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.atomic import atomic_path, refuse_existing, refuse_same_file
    from coffea_ad.errors import CoffeaADError
    from coffea_ad.features import JET_FEATURES, jet_table

    if list_only:
        for name, spec in JET_FEATURES.items():
            click.echo(f"{name:16s} {spec.source:13s} {spec.description}")
        return
    from coffea_ad.remote import input_location, is_url

    try:  # before any event is read
        location = input_location(input_file)
        if not is_url(location):
            refuse_same_file(output, [location], option="--output")
        refuse_existing(output, overwrite=overwrite)
        input_file = str(location)
    except (CoffeaADError, FileNotFoundError, ModuleNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    wanted = list(JET_FEATURES) if names is None else [n.strip() for n in names.split(",")
                                                        if n.strip()]
    with warnings.catch_warnings():
        # coffea's schema warns about cross-references a given file does not carry
        warnings.filterwarnings("ignore", message="Missing cross-reference", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Branch .* already exists", category=RuntimeWarning)
        events = NanoEventsFactory.from_root({str(input_file): tree},
                                             schemaclass=PFNanoAODSchema,
                                             mode="virtual").events()
    try:
        table = jet_table(events, wanted, jets=jets, puppi=puppi,
                          nonfinite="zero" if nonfinite == "zero" else "raise")
    except CoffeaADError as err:
        hint = ""
        if names is None:
            branch_only = [n for n, spec in JET_FEATURES.items() if spec.source == "jet"]
            hint = ("\nFiles without PF candidates still give the jet-branch features: "
                    f"--features {','.join(branch_only)}")
        raise click.ClickException(f"{err}{hint}") from err
    with atomic_path(output) as tmp:
        ak.to_parquet(table, tmp)
    click.echo(f"wrote {len(table)} jets x {len(wanted)} features from {len(events)} events "
               f"to {output}")
