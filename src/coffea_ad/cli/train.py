"""``coffea-ad train RECIPE --fileset F [--set key=value ...] --out models/NAME``."""

from __future__ import annotations

import importlib
import json
import pkgutil

import click

from coffea_ad.errors import UnknownNameError

__all__ = ["RECIPES", "load_recipe", "train"]


def _recipes() -> list[str]:
    import coffea_ad.training as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


RECIPES = _recipes()


def load_recipe(name: str):
    """The recipe module ``coffea_ad.training.NAME``; unknown name -> UnknownNameError."""
    if name not in RECIPES:
        raise UnknownNameError("recipe", name, RECIPES)
    return importlib.import_module(f"coffea_ad.training.{name}")


@click.command(epilog="Recipes: " + ", ".join(RECIPES) + ". Each recipe's keys are its "
               "CONFIG dict (coffea_ad.training.RECIPE.CONFIG).")
@click.argument("recipe")
@click.option("--fileset", "fileset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Fileset JSON (coffea dataset format), e.g. from `coffea-ad generate`.")
@click.option("--config", "config_file", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="TOML or YAML file of CONFIG keys (applied before --set).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the recipe's CONFIG (repeatable; lists as a,b,c or "
                   "JSON, e.g. --set train_datasets=qcd_train --set hidden=8,4).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output base path: writes OUT.onnx, OUT.json, OUT.md, OUT_loss.png.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.onnx and its files.")
@click.option("--quiet", "-q", is_flag=True,
              help="No per-epoch line (loss, validation loss, learning rate) on stderr.")
def train(recipe: str, fileset: str, config_file: str | None, settings: tuple[str, ...],
          out: str, overwrite: bool, quiet: bool) -> None:
    """Train model RECIPE on FILESET and export it to ONNX with its contract and card.

    Prints one line per epoch on stderr (unless --quiet) and the metrics as JSON on stdout.
    """
    import math

    from coffea_ad.atomic import refuse_existing, refuse_same_file
    from coffea_ad.config import ConfigError, load_config_file, resolve_settings
    from coffea_ad.nn.export import model_paths

    module = load_recipe(recipe)
    try:  # typed against the recipe's CONFIG defaults, before reading any event
        config = resolve_settings(
            module.CONFIG, file_values=load_config_file(config_file) if config_file else {},
            overrides=settings, what=f"{recipe} config key")
    except ConfigError as err:
        raise click.BadParameter(str(err), param_hint="--set/--config") from None
    for key, value in config.items():
        # NaN compares false with everything: a NaN cut silently selects nothing (or all)
        if isinstance(value, float) and math.isnan(value):
            raise click.BadParameter(f"{key}={value}: expected a finite number",
                                     param_hint="--set")
    for path in model_paths(out).values():  # every file the recipe writes
        refuse_same_file(path, [fileset], option="--out")
    refuse_existing(model_paths(out)["onnx"], overwrite=overwrite)
    if quiet:
        metrics = module.run(config, fileset, out)
    else:
        from coffea_ad.nn.fit import report_epochs  # every recipe imports torch already

        with report_epochs(lambda r: click.echo(r.line(), err=True)):
            metrics = module.run(config, fileset, out)
    click.echo(json.dumps(metrics, indent=2, default=str))
