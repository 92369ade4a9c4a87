"""Re-export models/svj_gae.onnx from its own weights with the current GraphAutoencoder graph.

No retraining: the weights (and so the contract, card and AUCs) stay; only the ONNX graph is
rebuilt by nn/graph_ae.py's forward (padding masks folded into the degree vector, no mask
product after each layer, the linear maps as Gemm; since the second re-export the ELU as
Max/Exp/Min and reshapes with constant shapes; since the third no Δφ wrap, the φ column
being ``dphi``, relative to the jet axis: ``periodic_phi`` as ``training/gae.py`` sets it;
since the fourth the node-level ops on the flat ``[batch, n * F]`` layout).
Any encoder depth (read from the weights). The new file replaces the old one only if its
scores equal the old export's on the given jets within ``--rtol`` (printed: max absolute
and relative difference, fraction bit-identical, the reconstruction's max absolute
difference, and ONNX Runtime throughput of both on one thread).

    python studies/reexport_svj_gae.py --files F1.root F2.root [--model models/svj_gae.onnx]

``--adjacency-input`` exports the normalized adjacency as a third input (``adjacency``, a
derived input of the contract that the scorer computes per batch with
:func:`coffea_ad.features.normalized_adjacency`) and writes the contract with it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_weights(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def layer_names(weights: dict[str, np.ndarray]) -> list[str]:
    """``encoder.0, encoder.1, ..., decoder.0, ...``: the GCN layers held in the export."""
    return [f"{part}.{k}" for part in ("encoder", "decoder")
            for k in range(len(weights)) if f"{part}.{k}.linear.bias" in weights]


def module_from_onnx(path: Path, contract: dict) -> object:
    """The GraphAutoencoder of ``training/gae.py`` with the weights of the export at ``path``
    (any depth: the encoder widths are read from the layers' biases)."""
    import torch

    from coffea_ad.nn.graph_ae import GraphAutoencoder
    from coffea_ad.training.gae import periodic_phi

    weights = load_weights(path)
    feats = contract["inputs"][0]["features"]
    layers = layer_names(weights)
    n_enc = sum(name.startswith("encoder.") for name in layers)
    widths = [weights[f"{name}.linear.bias"].shape[0] for name in layers]
    # Gemm exports name the Linear weights ([out, in]); older MatMul exports hold them
    # transposed ([in, out]) under generated names, in layer order
    matmuls = [w for name, w in weights.items() if name.startswith("onnx::MatMul")]
    mats = [weights[f"{name}.linear.weight"].T if f"{name}.linear.weight" in weights
            else matmuls[k] for k, name in enumerate(layers)]
    model = GraphAutoencoder(
        len(feats), contract["inputs"][0]["pad_length"], eta_index=feats.index("deta"),
        phi_index=feats.index("dphi"), r_c=0.1, periodic_phi=periodic_phi("dphi"),
        adjacency="hard",
        hidden=widths[:n_enc - 1], latent=widths[n_enc - 1], activation="elu",
        centre=weights["scaler.centre"].copy(), scale=weights["scaler.scale"].copy())
    assert "ΔR<0.1 hard" in contract["description"], contract["description"]
    with torch.no_grad():
        for layer, name, mat in zip((*model.encoder, *model.decoder), layers, mats,
                                    strict=True):
            assert mat.shape == tuple(layer.linear.weight.shape[::-1]), (name, mat.shape)
            layer.linear.weight.copy_(torch.from_numpy(mat.T.copy()))
            layer.linear.bias.copy_(torch.from_numpy(weights[f"{name}.linear.bias"]))
    return model.eval()


def padded_jets(files: list[str], contract: dict) -> tuple[np.ndarray, np.ndarray]:
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from coffea_ad.features import jet_constituents, particle_list

    spec = contract["inputs"][0]
    xs, ms = [], []
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ev = NanoEventsFactory.from_root({path: "Events"}, schemaclass=PFNanoAODSchema,
                                             mode="virtual").events()
        x, m = particle_list(jet_constituents(ev), ev.FatJet, n=spec["pad_length"],
                             features=spec["features"], pad_value=spec["pad_value"])
        xs.append(np.asarray(x, dtype=np.float32))
        ms.append(np.asarray(m, dtype=np.float32))
    return np.concatenate(xs), np.concatenate(ms)


GRAPH = {"kind": "normalized_adjacency", "of": "particles", "eta": "deta", "phi": "dphi",
         "r_c": 0.1, "adjacency": "hard", "periodic_phi": False}


def feeds(sess: object, x: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
    """The session's inputs for these jets (the adjacency computed when it takes one)."""
    from coffea_ad.features import normalized_adjacency

    names = [i.name for i in sess.get_inputs()]  # type: ignore[attr-defined]
    out = {names[0]: x, names[1]: m}
    if len(names) == 3:
        out[names[2]] = normalized_adjacency(x, m, eta_index=0, phi_index=1,
                                             r_c=GRAPH["r_c"], periodic_phi=False)
    return out


def reconstruction(path: Path, x: np.ndarray, m: np.ndarray, batch: int = 128) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["reconstruction"], feeds(sess, x[a:a + batch],
                                                              m[a:a + batch]))[0]
                           for a in range(0, len(x), batch)])


def scores(path: Path, x: np.ndarray, m: np.ndarray, batch: int = 128) -> tuple[np.ndarray,
                                                                                 float]:
    """Loss of every jet and jets per CPU second (one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = np.empty(len(x), dtype=np.float32)
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for a in range(0, len(x), batch):
            out[a:a + batch] = sess.run(["loss"], feeds(sess, x[a:a + batch],
                                                        m[a:a + batch]))[0]
        best = min(best, time.process_time() - t)
    return out, len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "svj_gae.onnx")
    parser.add_argument("--files", nargs="+", required=True, help="PFNano files of the jets")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--dry-run", action="store_true", help="compare, do not replace")
    parser.add_argument("--adjacency-input", action="store_true",
                        help="export the normalized adjacency as a derived third input")
    args = parser.parse_args()

    import torch

    from coffea_ad.nn.export import export_onnx

    contract = json.loads(args.model.with_suffix(".json").read_text())
    x, m = padded_jets(args.files, contract)
    model = module_from_onnx(args.model, contract)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=args.model.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        example = {"particles": torch.from_numpy(x[:64]), "mask": torch.from_numpy(m[:64])}
        if args.adjacency_input:
            with torch.no_grad():
                example["adjacency"] = model.normalized_adjacency(example["particles"],
                                                                  example["mask"])
        export_onnx(model, example, tmp_path, output_names=list(model.output_names))
        old, old_rate = scores(args.model, x, m)
        new, new_rate = scores(tmp_path, x, m)
        diff = np.abs(new - old)
        rel = float(np.max(diff / np.maximum(np.abs(old), 1e-30)))
        recon = np.abs(reconstruction(tmp_path, x, m) - reconstruction(args.model, x, m)).max()
        print(f"{len(x)} jets: max |diff| {diff.max():.3g}, max relative {rel:.3g}, "
              f"bit-identical {np.mean(new == old):.4f}, reconstruction max |diff| "
              f"{recon:.3g}; old {old_rate / 1e3:.1f} kjet/s, "
              f"new {new_rate / 1e3:.1f} kjet/s (CPU, 1 thread, batch 128)")
        if rel > args.rtol:
            raise SystemExit(f"scores differ by {rel:.3g} > rtol {args.rtol}: not replaced")
        if args.dry_run:
            return
        if args.adjacency_input:
            from coffea_ad.atomic import atomic_write_text
            from coffea_ad.inference.contract import ModelContract

            n = contract["inputs"][0]["pad_length"]
            contract["inputs"] = [*[i for i in contract["inputs"] if i["name"] != "adjacency"],
                                  {"name": "adjacency", "features": ["adjacency"],
                                   "shape": [n, n], "dtype": "float32", "scaling": "none",
                                   "centre": None, "scale": None, "pad_length": n,
                                   "pad_value": 0.0, "graph": dict(GRAPH)}]
            ModelContract.from_dict(contract)  # validated before anything is replaced
            atomic_write_text(args.model.with_suffix(".json"),
                              json.dumps(contract, indent=2) + "\n")
        tmp_path.replace(args.model)  # temp file + rename
        print(f"replaced {args.model}")
    finally:
        tmp_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
