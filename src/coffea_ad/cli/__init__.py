"""The ``coffea-ad`` console script: one subcommand per verb, each thin over the library.

Subcommands are imported lazily so that ``coffea-ad --help`` works without the optional
extras (torch, Pythia, ...) and each verb only pays for what it imports.
"""

from __future__ import annotations

import importlib
import math
import os

import click

from coffea_ad import __version__

__all__ = ["error_line", "main", "parse_settings"]

# verb -> "module:attribute" of its click command
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("coffea_ad.cli.demo:demo", "Generate, train, score on Dask, plot: the whole chain."),
    "generate": ("coffea_ad.cli.generate:generate", "Generate PFNano-format samples with Pythia8 + FastJet."),
    "features": ("coffea_ad.cli.features:features", "Write the per-jet feature table of a file."),
    "train": ("coffea_ad.cli.train:train", "Train a model recipe and export it to ONNX."),
    "score": ("coffea_ad.cli.score:score", "Score a file with an ONNX model into a friend tree."),
    "inspect": ("coffea_ad.cli.score:inspect", "Print an ONNX model's contract, inputs and providers."),
    "run": ("coffea_ad.cli.run:run", "Run a processor over a fileset."),
    "report": ("coffea_ad.cli.report:report", "Statistics and plots from a run's output."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand; an error it raises becomes one line and exit 1 (``--debug``
        or ``COFFEA_AD_DEBUG=1``: the traceback instead)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            if ctx.params.get("debug") or os.environ.get("COFFEA_AD_DEBUG") == "1":
                raise
            raise click.ClickException(
                f"{error_line(err)} (coffea-ad --debug ... shows the traceback)"
            ) from err

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coffea-ad")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
def main(debug: bool) -> None:
    """coffea-ad: anomaly detection for coffea analyses (features, ONNX scoring, statistics)."""


def error_line(err: BaseException) -> str:
    """``TypeName: message`` of an error (a KeyError's message without its quotes)."""
    msg = str(err)
    if isinstance(err, KeyError) and len(err.args) == 1 and not hasattr(err, "message"):
        msg = str(err.args[0])
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def parse_settings(pairs: tuple[str, ...]) -> dict[str, object]:
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}`` (numbers and true/false parsed)."""
    out: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--set")
        key, value = pair.split("=", 1)
        parsed = _parse_value(value.strip())
        # NaN compares false with everything: a NaN cut silently selects nothing (or all)
        if isinstance(parsed, float) and (math.isnan(parsed) or (
                math.isinf(parsed) and "threshold" in key)):
            raise click.BadParameter(
                f"{key.strip()}={value.strip()}: expected a finite number", param_hint="--set")
        out[key.strip()] = parsed
    return out


def _parse_value(value: str) -> object:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
