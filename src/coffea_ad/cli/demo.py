"""``coffea-ad demo``: the whole chain on generated samples and a local Dask cluster."""

from __future__ import annotations

import os
import warnings
from dataclasses import fields

import click

from coffea_ad.demo import DemoConfig, run_demo

__all__ = ["demo"]


def _options(func):  # one click option per DemoConfig field, defaults from the dataclass
    for f in reversed(fields(DemoConfig)):
        func = click.option(f"--{f.name.replace('_', '-')}", f.name, type=type(f.default),
                            default=f.default, show_default=True)(func)
    return func


@click.command()
@click.option("--out", "-o", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Output folder.")
@_options
def demo(out: str, **sizes: object) -> None:
    """Generate QCD and semivisible-jet samples, train the p_T-conditioned flow, export it to ONNX,
    score every AK8 jet on a Dask LocalCluster, and write histograms, plots and a summary."""
    # Generated files carry the PFNano collections the demo needs, not every cross-referenced
    # one PFNanoAODSchema knows (GenJetSVs, SubGenJetAK8...): its per-file warning about them
    # is noise here. The variable reaches the Dask worker processes too.
    quiet = "ignore:Missing cross-reference index:RuntimeWarning"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)
    run_demo(out, DemoConfig(**sizes), echo=click.echo)
