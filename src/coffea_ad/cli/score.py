"""``coffea-ad score`` and ``coffea-ad inspect``: thin over :mod:`coffea_ad.inference`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from coffea_ad.errors import CoffeaADError

__all__ = ["inspect", "score"]


@click.command()
@click.argument("input_file", metavar="INPUT.root")
@click.option("--model", "-m", "model", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ONNX model (its sidecar NAME.json must sit next to it).")
@click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ROOT file to write the friend tree to.")
@click.option("--tree", default="Events", show_default=True, help="Tree name in input and output.")
@click.option("--name", default=None, help="Score branch name (default: the contract's name).")
@click.option("--step-size", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="Entries per chunk.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Rows per ONNX Runtime call (default: about 256 kB of input per call "
                   "on the CPU, 64 MB on a GPU, a power of two; see "
                   "coffea_ad.inference.auto_batch_size).")
@click.option("--provider", "providers", multiple=True,
              help="Execution provider in order of preference (repeat): cuda, tensorrt, cpu "
                   "or full names. Default: GPU when available, CPU otherwise.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="ONNX Runtime intra-op threads (default: all cores).")
@click.option("--nonfinite", type=click.Choice(["raise", "flag"]), default="raise", show_default=True,
              help="NaN/inf inputs or model outputs: fail, or write the sentinel -1 and a "
                   "<name>_nonfinite branch (the count is printed).")
@click.option("--schema", type=click.Choice(["pfnano", "nanoaod", "treemaker", "scouting"]),
              default="pfnano", show_default=True,
              help="Input format (TreeMaker: --tree PreSelection, aligned by RunNum/LumiBlockNum/EvtNum).")
@click.option("--jets", default=None,
              help="Jet collection to score (default: the model's); another one must be "
                   "declared in the model contract's sources, e.g. JetsAK8.")
@click.option("--puppi/--no-puppi", default=True, show_default=True,
              help="Weight constituents by PFCands_puppiWeight when the file has it.")
@click.option("--all-outputs", is_flag=True, help="Also write the model's other per-row scalar outputs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (never the input).")
def score(input_file: str, model: Path, output: Path, tree: str, name: str | None, step_size: int,
          batch_size: int | None, providers: tuple[str, ...], threads: int | None, nonfinite: str,
          schema: str, jets: str | None, puppi: bool, all_outputs: bool, overwrite: bool) -> None:
    """Score INPUT.root (a local path or a root:// / https:// URL) with an ONNX model into a
    friend tree aligned by run/lumi/event."""
    from coffea_ad.atomic import refuse_existing, refuse_same_file
    from coffea_ad.inference.friend import write_score_friend
    from coffea_ad.remote import input_location, is_url

    with _clean_errors():
        # before the model is loaded: these need nothing but the paths
        location = input_location(input_file)
        local = [] if is_url(location) else [location]
        refuse_same_file(output, [*local, model], option="--output")
        refuse_existing(output, overwrite=overwrite)
        summary = write_score_friend(
            input_file, model, output, tree=tree, name=name, step_size=step_size,
            all_outputs=all_outputs, providers=list(providers) or None, batch_size=batch_size,
            intra_op_threads=threads, nonfinite=nonfinite, puppi=puppi, schema=schema, jets=jets,
            overwrite=overwrite,
        )
    click.echo(
        f"wrote {summary.output}:{tree}: {summary.entries} entries, {summary.rows} rows scored, "
        f"branches {', '.join(summary.branches)}, provider {summary.provider or '-'}, "
        f"{summary.seconds:.2f} s"
        + (f", {summary.nonfinite_rows} rows flagged non-finite" if nonfinite == "flag" else "")
    )


@click.command()
@click.argument("model", metavar="M.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def inspect(model: Path, as_json: bool) -> None:
    """Print an ONNX model's contract, graph inputs/outputs, opset and available providers."""
    with _clean_errors():
        info = describe_model(model)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    c = info["contract"]
    click.echo(f"model      {info['file']}  ({info['bytes']} bytes, sha256 {info['sha256'][:16]}...)")
    click.echo(f"contract   {c['name']}  kind={c['kind']}  level={c['level']}  jets={c['jets']}  "
               f"score={c['score']}  opset={c['opset']}")
    click.echo(f"graph      opset {info['opset']}, ir_version {info['ir_version']}, "
               f"producer {info['producer'] or '-'}")
    for spec in c["inputs"]:
        graph = info["graph_inputs"].get(spec["name"], {})
        click.echo(f"input      {spec['name']}: {graph.get('dtype')} {graph.get('shape')}  "
                   f"scaling={spec['scaling']}"
                   + (f" pad_length={spec['pad_length']}" if spec["pad_length"] else ""))
        for k, feat in enumerate(spec["features"]):
            scale = ""
            if spec["scaling"] == "external":
                scale = f"  centre={spec['centre'][k]:.6g} scale={spec['scale'][k]:.6g}"
            click.echo(f"  [{k}] {feat}{scale}")
    meanings = {o["name"]: o["meaning"] for o in c["outputs"]}
    for name, graph in info["graph_outputs"].items():
        click.echo(f"output     {name}: {graph['dtype']} {graph['shape']}  "
                   f"meaning={meanings.get(name, '(not in contract)')}")
    click.echo(f"providers  available {info['providers_available']}; "
               f"default order here {info['providers_selected']}")


def describe_model(model: Path) -> dict[str, Any]:
    """Contract, graph signature and providers of a model, as plain JSON-able data."""
    import onnx

    from coffea_ad.inference import (
        OnnxScorer,
        available_providers,
        file_sha256,
        graph_signature,
        select_providers,
    )
    from coffea_ad.inference.checks import check_feature_names

    scorer = OnnxScorer(model)  # validates file and contract; creates no session
    check_feature_names(scorer.contract)  # what `run` would refuse on its first chunk
    path = scorer.model_path
    st = path.stat()
    sig = graph_signature(path)
    proto = onnx.load(str(path), load_external_data=False)

    def io(values: dict[str, Any]) -> dict[str, Any]:
        return {k: {"dtype": str(v[0]), "shape": v[1]} for k, v in values.items()}

    return {
        "file": str(path),
        "bytes": st.st_size,
        "sha256": file_sha256(path),
        "opset": sig["opset"],
        "ir_version": int(proto.ir_version),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "graph_inputs": io(sig["inputs"]),
        "graph_outputs": io(sig["outputs"]),
        "contract": scorer.contract.to_dict(),
        "providers_available": available_providers(),
        "providers_selected": select_providers(None),
    }


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """Our own errors already say what was expected and found: print them, not a traceback."""
    try:
        yield
    except (CoffeaADError, ValueError, FileNotFoundError, ModuleNotFoundError) as err:
        raise click.ClickException(f"{type(err).__name__}: {err}") from err
