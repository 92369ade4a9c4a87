"""What every training recipe shares: configuration, dataset roles, export and documentation.

The recipes in ``training/`` (``coffea_ad.training.*``) are a ``CONFIG`` dict plus a ``run``
that calls these helpers; logic lives here so that recipes stay a page long.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.atomic import atomic_write_text
from coffea_ad.config import parse_number
from coffea_ad.errors import InvalidArgumentError, MissingMetadataError, UnknownNameError
from coffea_ad.inference.contract import InputSpec, ModelContract
from coffea_ad.nn.data import dataset_files, signal_datasets, split_indices
from coffea_ad.nn.export import (
    DEFAULT_OPSET,
    export_onnx,
    model_paths,
    plot_history,
    verify_onnx,
    write_model_card,
)

__all__ = [
    "Split",
    "auc_table",
    "dataset_roles",
    "finish",
    "flat_pt_weights",
    "luminosity_weights",
    "merge_rows",
    "resolve_config",
    "run_constituent_model",
    "split_rows",
]


def resolve_config(defaults: Mapping[str, Any], config: Mapping[str, Any] | None,
                   *, recipe: str) -> dict[str, Any]:
    """``defaults`` updated by ``config``; a key ``defaults`` lacks raises
    :class:`~coffea_ad.errors.UnknownNameError` listing the valid keys.

    Tuples given as lists (from JSON/CLI) are kept as lists; ``hidden`` may also be given as a
    string ``"10,10"`` (what ``--set hidden=10,10`` yields).
    """
    out = dict(defaults)
    for key, value in (config or {}).items():
        if key not in defaults:
            raise UnknownNameError(f"{recipe} config key", key, defaults)
        if isinstance(value, str) and isinstance(defaults[key], (list, tuple)):
            value = [parse_number(v) for v in value.split(",") if v.strip()]
        out[key] = value
    return out


def dataset_roles(fileset: Mapping[str, Any], train_datasets: Sequence[str] | None
                  ) -> tuple[list[str], list[str], list[str]]:
    """Split the fileset's datasets into (train, signal, other background).

    Training datasets default to those with metadata ``is_signal`` false; signals are those
    with ``is_signal`` true; the rest are background datasets not trained on.
    """
    names = list(fileset)
    signals = signal_datasets(fileset)
    if train_datasets is None:
        train = [n for n in names if n not in signals]
    else:
        train = list(train_datasets)
        for n in train:
            if n not in fileset:
                raise UnknownNameError("dataset", n, names)
    if not train:
        raise InvalidArgumentError(f"no background dataset to train on: every dataset of {names} has "
                         f"is_signal true; name them with train_datasets")
    signals = [n for n in signals if n not in train]
    others = [n for n in names if n not in train and n not in signals]
    return train, signals, others


def flat_pt_weights(pt: np.ndarray, *, bins: int = 30,
                    base: np.ndarray | None = None) -> np.ndarray:
    """Weights that make the (weighted) p_T distribution flat: 1 / density in p_T quantile bins.

    Decorrelates the AE from jet p_T (as the SVJ AE studies do, arXiv:2112.02864 sec. 3).
    Normalized to mean 1.
    """
    base = np.ones_like(pt, dtype=np.float64) if base is None else np.asarray(base, np.float64)
    if len(pt) == 0:
        return base.astype(np.float32)
    edges = np.unique(np.quantile(pt, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, pt, side="right") - 1, 0, len(edges) - 2)
    content = np.bincount(idx, weights=base, minlength=len(edges) - 1)
    width = np.diff(edges)
    density = content / np.where(width > 0, width, 1.0)
    w = base / np.where(density[idx] > 0, density[idx], 1.0)
    return (w / w.mean()).astype(np.float32)


def finish(model, contract: ModelContract, *, out: str | Path,
           example: Mapping[str, np.ndarray], check: Mapping[str, np.ndarray],
           config: Mapping[str, Any], history=None, training_files: Sequence[str] = (),
           fileset: Mapping[str, Any] | None = None, onnx_model=None) -> dict[str, Path]:
    """Export, verify, plot and document a trained model.

    Args:
        model: the trained torch module (its ``output_names`` name the ONNX outputs).
        contract: the contract (training files and their sha256 are added here).
        out: ``models/NAME`` (suffix optional).
        example: inputs to trace with.
        check: inputs of another batch size for the ONNX Runtime vs torch check (rtol 1e-4).
        config: the resolved recipe configuration (written whole into the contract's
            ``training["config"]`` and the card).
        history: the training :class:`~coffea_ad.nn.fit.History`.
        training_files: datasets whose files' sha256 go into the contract.
        fileset: the normalized fileset the datasets come from.
        onnx_model: export this module instead of ``model`` (e.g. a wrapper).

    Returns:
        The paths written (see :func:`coffea_ad.nn.export.model_paths`).
    """
    paths = model_paths(out)
    contract.name = paths["onnx"].stem
    if fileset is not None and training_files:
        contract.training["files"] = dataset_files(fileset, training_files)
    # the whole resolved configuration (defaults, config file, --set), as the card shows it:
    # the contract is what travels with the model into a run
    contract.training["config"] = json.loads(json.dumps(dict(config), default=str))
    module = onnx_model if onnx_model is not None else model
    export_onnx(module, example, paths["onnx"], output_names=module.output_names,
                opset=contract.opset, contract=contract)
    contract.extra["onnx_vs_torch_max_abs_diff"] = verify_onnx(module, paths["onnx"], check)
    contract.write(paths["contract"])
    if history is not None:
        atomic_write_text(paths["history"], json.dumps(history.to_dict(), indent=1) + "\n")
        plot_history(history, paths["loss_plot"], title=contract.name)
    write_model_card(paths["card"], contract, config=config, history=history,
                     loss_plot=paths["loss_plot"] if history is not None else None)
    return paths


@dataclass
class Split:
    """Background rows merged over the training datasets and their seeded split.

    Attributes:
        rows: merged columns (``x``, ``weight``, ``event``, ...), events made unique.
        train, val, test: index arrays into ``rows`` (grouped by event).
    """

    rows: dict[str, np.ndarray]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, which: str, column: str = "x") -> np.ndarray:
        return self.rows[column][getattr(self, which)]


def merge_rows(tables: Mapping[str, Mapping[str, np.ndarray]], names: Sequence[str]
               ) -> dict[str, np.ndarray]:
    """Concatenate the row tables of ``names``; event numbers offset to stay unique and a
    ``dataset`` column (position in ``names``) added."""
    out: dict[str, list[np.ndarray]] = {}
    offset = 0
    for i, name in enumerate(names):
        t = tables[name]
        for k, v in t.items():
            out.setdefault(k, []).append(v + offset if k == "event" else v)
        out.setdefault("dataset", []).append(np.full(len(t["event"]), i, np.int16))
        offset += int(t["event"].max()) + 1 if len(t["event"]) else 0
    return {k: np.concatenate(v) for k, v in out.items()}


def split_rows(rows: dict[str, np.ndarray], cfg: Mapping[str, Any]) -> Split:
    """Seeded train/val/test split of ``rows`` grouped by event (``cfg`` has ``seed``,
    ``val_fraction``, ``test_fraction``)."""
    tr, va, te = split_indices(len(rows["event"]), val_fraction=cfg["val_fraction"],
                               test_fraction=cfg["test_fraction"], seed=cfg["seed"],
                               groups=rows["event"])
    if len(tr) == 0 or len(va) == 0:
        raise InvalidArgumentError(f"too few rows to train: {len(rows['event'])} background rows give "
                         f"{len(tr)} train and {len(va)} validation rows")
    return Split(rows, tr, va, te)


def luminosity_weights(fileset: Mapping[str, Any], name: str, gen_weight: np.ndarray, *,
                       lumi_fb: float, fraction: float = 1.0) -> np.ndarray:
    """Per-row yields ``genWeight * xsec * L / sumw / fraction`` from the dataset metadata.

    ``xsec`` in pb (as the samples write it), ``L`` in fb^-1; ``fraction`` is the share of
    the dataset's events the rows are (e.g. the test fraction), so yields are per full sample.
    """
    meta = fileset[name].get("metadata", {})
    if "xsec" not in meta or "sumw" not in meta:
        raise MissingMetadataError(f"dataset {name!r}: expected metadata 'xsec' and 'sumw' for luminosity "
                       f"weights, found {sorted(meta)}")
    return (np.asarray(gen_weight, np.float64) * float(meta["xsec"]) * 1000.0 * lumi_fb
            / float(meta["sumw"]) / fraction)


def auc_table(test_scores: np.ndarray, test_weights: np.ndarray | None,
              others: Mapping[str, tuple[np.ndarray, np.ndarray | None]]) -> dict[str, float]:
    """AUC of held-out background scores against each dataset's scores (rounded to 1e-4)."""
    from coffea_ad.stats.roc import auc

    out = {}
    for name, (scores, weights) in others.items():
        if len(scores) and len(test_scores):
            out[name] = round(auc(test_scores, scores, weights_bkg=test_weights,
                                  weights_sig=weights), 4)
    return out


def run_constituent_model(cfg: Mapping[str, Any], fileset, out, *, build, kind: str,
                          outputs: Sequence[Any], score: str, description: str,
                          recipe_name: str,
                          graph: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Shared body of the constituent-level recipes (particle VAE, graph AE).

    Reads padded constituent lists (:func:`coffea_ad.nn.data.particle_rows`) of the leading
    jets, trains ``build(centre, scale)`` on background jets, measures AUC of the first model
    output per signal dataset, exports with inputs ``particles [batch, n, F]`` and
    ``mask [batch, n]``.

    Args:
        cfg: resolved config with ``particle_features, n_particles, jets, max_jets, min_pt``
            and the training keys of :func:`coffea_ad.nn.fit.fit`.
        build: ``build(centre, scale) -> model`` (called after seeding torch).
        kind, outputs, score, description: contract fields.
        recipe_name: for the contract name and messages.
        graph: export the model with a third input ``adjacency``, the derived input of
            :class:`~coffea_ad.inference.contract.InputSpec` with this ``graph`` (the model's
            ``forward(particles, mask, adjacency)`` takes it), which the scorer computes per
            batch; None: two inputs.

    Returns:
        Metrics dict (``auc``, ``auc_background``, ``n_train``, ``epochs``, ``onnx``).
    """
    import torch

    from coffea_ad.nn.data import load_fileset, load_rows, particle_rows
    from coffea_ad.nn.fit import fit, predict
    from coffea_ad.nn.scaling import standardization

    fs = load_fileset(fileset)
    train_ds, signals, others = dataset_roles(fs, cfg["train_datasets"])
    tables = load_rows(fs, particle_rows, datasets=train_ds + signals + others,
                       features=cfg["particle_features"], n=cfg["n_particles"], jets=cfg["jets"],
                       max_jets=cfg["max_jets"], min_pt=cfg["min_pt"])
    split = split_rows(merge_rows(tables, train_ds), cfg)
    x, mask = split.rows["x"], split.rows["mask"]
    centre, scale = standardization(x[split.train], mask=mask[split.train] > 0)
    torch.manual_seed(cfg["seed"])
    model = build(centre, scale)
    history = fit(model, [x[split.train], mask[split.train]], [x[split.val], mask[split.val]],
                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                  patience=cfg["patience"], lr_patience=cfg["lr_patience"], seed=cfg["seed"],
                  threads=cfg["threads"])
    te = split.test
    bkg = predict(model, [x[te], mask[te]])[0]
    scored = {n: (predict(model, [tables[n]["x"], tables[n]["mask"]])[0], None)
              for n in signals + others if n in tables and len(tables[n]["x"])}
    aucs = auc_table(bkg, None, {n: v for n, v in scored.items() if n in signals})
    aucs_bkg = auc_table(bkg, None, {n: v for n, v in scored.items() if n in others})
    feats, n_part = list(cfg["particle_features"]), cfg["n_particles"]
    contract = ModelContract(
        name=recipe_name, kind=kind, level="jet", jets=cfg["jets"],
        inputs=[InputSpec("particles", feats, [n_part, len(feats)], scaling="in_graph",
                          pad_length=n_part, pad_value=0.0),
                InputSpec("mask", ["mask"], [n_part], pad_length=n_part, pad_value=0.0)],
        outputs=list(outputs), score=score, opset=DEFAULT_OPSET, description=description,
        training={"datasets": train_ds, "fileset_datasets": list(fs),
                  "selection": {"jets": cfg["jets"], "max_jets": cfg["max_jets"],
                                "min_pt": cfg["min_pt"], "constituents": "p_T-ordered, "
                                f"first {n_part}, padded with 0"},
                  "n_jets": {"train": len(split.train), "val": len(split.val), "test": len(te)},
                  "split": {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"],
                            "test_fraction": cfg["test_fraction"], "grouped_by": "event"}},
        metrics={"auc": aucs, "auc_background": aucs_bkg},
    )
    example = {"particles": x[split.train][:8], "mask": mask[split.train][:8]}
    check = {"particles": x[split.val][:21], "mask": mask[split.val][:21]}
    if graph is not None:
        from coffea_ad.inference._layout import derive_graph

        spec = InputSpec("adjacency", ["adjacency"], [n_part, n_part], pad_length=n_part,
                         graph=dict(graph))
        contract.inputs.append(spec)
        contract.validate()
        for feeds in (example, check):
            feeds["adjacency"] = derive_graph(spec, {k: np.ascontiguousarray(v, np.float32)
                                                     for k, v in feeds.items()}, contract)
    paths = finish(model, contract, out=out, example=example, check=check,
                   config=cfg, history=history, training_files=train_ds, fileset=fs)
    return {"auc": aucs, "auc_background": aucs_bkg, "n_train": len(split.train),
            "epochs": len(history.train_loss), "onnx": str(paths["onnx"])}
