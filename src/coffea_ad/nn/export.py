"""ONNX export of the models with their contract, verification against torch, model card.

Export uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``: the
dynamo exporter needs ``onnxscript``, which is not a dependency) with a dynamic batch axis on
every input and output. :func:`verify_onnx` runs the exported file in ONNX Runtime at a batch
size of its own and compares with torch (weaver-core's export check).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad._optional import require
from coffea_ad.atomic import atomic_path, atomic_write_text
from coffea_ad.errors import ModelFileError
from coffea_ad.inference.contract import ModelContract, sidecar_path

torch = require("torch", purpose="coffea_ad.nn")

__all__ = [
    "DEFAULT_OPSET",
    "export_onnx",
    "model_paths",
    "plot_history",
    "verify_onnx",
    "write_model_card",
]

DEFAULT_OPSET = 17


def model_paths(out: str | Path) -> dict[str, Path]:
    """``models/NAME`` or ``models/NAME.onnx`` -> the files a recipe writes.

    Returns:
        ``{"onnx": NAME.onnx, "contract": NAME.json, "card": NAME.md, "loss_plot":
        NAME_loss.png, "history": NAME_history.json}``, parent folder created.
    """
    out = Path(out)
    base = out.with_suffix("") if out.suffix == ".onnx" else out
    base.parent.mkdir(parents=True, exist_ok=True)
    return {
        "onnx": base.with_name(base.name + ".onnx"),
        "contract": base.with_name(base.name + ".json"),
        "card": base.with_name(base.name + ".md"),
        "loss_plot": base.with_name(base.name + "_loss.png"),
        "history": base.with_name(base.name + "_history.json"),
    }


def export_onnx(model, inputs: Mapping[str, Any], path: str | Path, *,
                output_names: Sequence[str], opset: int = DEFAULT_OPSET,
                contract: ModelContract | None = None) -> Path:
    """Export ``model.forward(*inputs.values())`` to ONNX with a dynamic batch axis.

    Args:
        model: the torch module (put in eval mode here).
        inputs: ONNX input name -> example tensor/array (its batch size is the traced one).
        path: the ``.onnx`` file to write.
        output_names: one name per forward output, in order.
        opset: ONNX opset.
        contract: written next to the model as its sidecar when given (validated first).

    Returns:
        The path of the ``.onnx`` file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if contract is not None:
        contract.validate()
    model.eval()
    names = list(inputs)
    args = tuple(torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
                 for v in inputs.values())
    dynamic = {n: {0: "batch"} for n in [*names, *output_names]}
    # exported and checked under a temporary name: a failed export leaves the earlier model
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # the TorchScript exporter warns that it is deprecated in favour of dynamo (which
            # needs onnxscript); we pin dynamo=False on purpose
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*dynamo.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                model, args, str(tmp), input_names=names, output_names=list(output_names),
                dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True,
                dynamo=False,
            )
        onnx = require("onnx", purpose="checking the exported model")
        onnx.checker.check_model(str(tmp))
        if contract is not None:
            contract.write(sidecar_path(path))
    return path


def verify_onnx(model, path: str | Path, inputs: Mapping[str, Any], *, rtol: float = 1e-4,
                atol: float = 1e-5) -> dict[str, float]:
    """Compare ONNX Runtime with torch on ``inputs`` (use a batch size other than the traced one).

    Args:
        model: the torch module that was exported.
        path: the ``.onnx`` file.
        inputs: input name -> numpy array.
        rtol, atol: tolerance of ``numpy.testing.assert_allclose``.

    Returns:
        Output name -> largest absolute difference.

    Raises:
        AssertionError: an output differs beyond the tolerance (message names it).
    """
    ort = require("onnxruntime", purpose="verifying the ONNX export")
    if not Path(path).is_file():
        raise ModelFileError(f"expected an ONNX file at {path}, found none")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
    got = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    model.eval()
    with torch.no_grad():
        ref = model(*[torch.as_tensor(v) for v in feeds.values()])
    if not isinstance(ref, tuple):
        ref = (ref,)
    diffs: dict[str, float] = {}
    for name, g, r in zip(names, got, ref, strict=True):
        r = r.numpy()
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol,
                                   err_msg=f"ONNX Runtime output {name!r} differs from torch")
        diffs[name] = float(np.max(np.abs(g - r))) if g.size else 0.0
    return diffs


def plot_history(history, path: str | Path, *, title: str = "") -> Path:
    """Plot train/validation loss per epoch (log y) and mark the best epoch; writes a PNG."""
    matplotlib = require("matplotlib", purpose="loss-curve plots")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = np.arange(len(history.train_loss))
    ax.plot(epochs, history.train_loss, label="train")
    ax.plot(epochs, history.val_loss, label="validation")
    if history.best_epoch >= 0:
        ax.axvline(history.best_epoch, color="gray", ls=":",
                   label=f"best (epoch {history.best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if min(history.train_loss + history.val_loss, default=0) > 0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def write_model_card(path: str | Path, contract: ModelContract, *,
                     config: Mapping[str, Any] | None = None, history=None,
                     loss_plot: str | Path | None = None) -> Path:
    """Write the Markdown model card: what the model is, what it was trained on, how it scored.

    Args:
        path: the ``.md`` file.
        contract: the model's contract (inputs, outputs, training data, metrics).
        config: the recipe configuration used.
        history: the :class:`~coffea_ad.nn.fit.History` of the run.
        loss_plot: the loss-curve PNG to link.

    Returns:
        The path written.
    """
    lines = [f"# {contract.name}", "", contract.description or f"{contract.kind} model.", ""]
    lines += ["## Model", "", f"- kind: `{contract.kind}`, level: `{contract.level}`"
              + (f", jets: `{contract.jets}`" if contract.jets else ""),
              (f"- ONNX opset {contract.opset}, dynamic batch axis; "
               f"score output: `{contract.score}`")]
    for spec in contract.inputs:
        lines.append(f"- input `{spec.name}` shape [batch, {', '.join(map(str, spec.shape))}], "
                     f"scaling `{spec.scaling}`, features: {', '.join(spec.features)}")
    for o in contract.outputs:
        lines.append(f"- output `{o.name}`: {o.meaning}")
    lines += ["", "## Training data", ""]
    for key, value in contract.training.items():
        if key == "files":
            lines.append(f"- files ({len(value)}):")
            lines += [f"  - `{Path(f).name}` sha256 `{h[:16]}…`" for f, h in value.items()]
        else:
            lines.append(f"- {key}: {json.dumps(value, default=str)}")
    lines += ["", "## Metrics (held-out test split)", ""]
    lines += [f"- {k}: {json.dumps(v, default=str)}" for k, v in contract.metrics.items()]
    if history is not None:
        lines += ["", "## Training", "",
                  (f"- epochs run: {len(history.train_loss)}, best epoch: {history.best_epoch}, "
                  f"best validation loss: {history.best_val_loss:.6g}, "
                  f"stopped early: {history.stopped_early}, {history.seconds:.1f} s")]
    if loss_plot is not None:
        lines += ["", f"![loss curves]({Path(loss_plot).name})"]
    if config:
        lines += ["", "## Configuration", "", "```json",
                  json.dumps(dict(config), indent=2, default=str), "```"]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)
