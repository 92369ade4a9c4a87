"""OnnxScorer vs coffea's ``ml_tools.torch_wrapper`` on the same model and the same chunk,
and the measured throughput against this machine's limits.

One torch module (standardization + dense AE + per-jet MAE loss, all in the graph; by default
the SVJ architecture 6-10-10-6-10-10-6 with ELU) is exported
twice: to ONNX for :class:`coffea_ad.inference.OnnxScorer` and to TorchScript for coffea's
``torch_wrapper``. Both get the same ``events * jets * {6 features}`` awkward chunk, flatten it,
run the model on one CPU thread and put the scores back on the jets. Timings are medians of
interleaved repeats (ours, theirs, ours, ...) so machine load hits both alike.

    python benchmarks/bench_inference.py --chunks 10000,100000,300000 --repeats 5
    python benchmarks/bench_inference.py --quick        # smaller, for a smoke run
    python benchmarks/bench_inference.py --hidden 64,32 --latent 8   # a wider AE

Prints: throughput per chunk size (jets/s, ratio ours/torch_wrapper; target >= 2x at
>= 100k jets), a batch-size scan of ours at the largest chunk (ours uses its default, about
256 kB of input per ONNX Runtime call), the per-call overhead on a one-event chunk, and the
throughput against two simple limits of this machine: memory bandwidth (a measured large
numpy copy) over the bytes each jet must move (its float32 features in, its score out),
and peak float32 FLOPs (a measured large numpy matmul on one thread) over the model's
matmul FLOPs per jet (counted by torch's FlopCounterMode). Then the bare kernels on the same
flat rows, ONNX Runtime's session against the torch module without torch_wrapper, with the
ELUs and with identities in their place, the file as written (ONNX Runtime's own scalar Elu
kernel, its in-graph standardization as row-broadcast Sub and Div) and the file with the Elu
rewrite alone; our scorer's session runs both rewrites of :mod:`coffea_ad.inference.rewrite`
(vectorized Exp/Min/Max for Elu, one diagonal Gemm for the standardization): torch_wrapper
over the bare ONNX Runtime session is the most any scorer around that kernel can reach.

Then the constituent-level models (the graph AE of ``training/gae.py`` and the particle VAE
of ``training/particle_vae.py``, their default architectures, random weights): one torch
module each, exported to ONNX (both outputs, as the recipes ship them) for our scorer and to
TorchScript (score only) for torch_wrapper; both get the same padded jets (numpy
``[n, 50, F]`` + mask, what ``coffea_ad.features.particle_list`` gives the chain).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch/onnxruntime read it

import itertools

import awkward as ak
import numpy as np
import torch
from coffea.ml_tools.torch_wrapper import torch_wrapper

from coffea_ad.inference import InputSpec, ModelContract, OnnxScorer, OutputSpec
from coffea_ad.inference.rewrite import vectorize_elu
from coffea_ad.nn.export import export_onnx

FEATURES = ["eta", "phi", "mass", "ptd", "axis_major", "axis_minor"]
CENTRE = [0.0, 0.0, 120.0, 0.45, 0.12, 0.06]
SCALE = [1.4, 1.8, 60.0, 0.15, 0.05, 0.03]


class ScoredAE(torch.nn.Module):
    """Standardize -> dense AE (ELU) -> per-row mean absolute error: the score."""

    def __init__(self, hidden: list[int], latent: int) -> None:
        super().__init__()
        sizes = [6, *hidden, latent, *reversed(hidden), 6]
        layers: list[torch.nn.Module] = []
        for k, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(torch.nn.Linear(a, b))
            if k < len(sizes) - 2:
                layers.append(torch.nn.ELU())
        self.net = torch.nn.Sequential(*layers)
        self.register_buffer("centre", torch.tensor(CENTRE))
        self.register_buffer("scale", torch.tensor(SCALE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.centre) / self.scale
        return (self.net(z) - z).abs().mean(dim=1)


class TorchAEWrapper(torch_wrapper):
    """coffea's documented recipe: flatten jets to [n, 6], run, unflatten to the jets."""

    def prepare_awkward(self, jets: ak.Array) -> tuple[tuple[ak.Array], dict]:
        flat = ak.flatten(jets)
        x = np.stack([ak.to_numpy(flat[f]) for f in FEATURES], axis=1).astype(np.float32)
        return (ak.from_numpy(x),), {}

    def postprocess_awkward(self, ret: ak.Array, jets: ak.Array) -> ak.Array:
        return ak.unflatten(ret, ak.num(jets))

    def validate_numpy_input(self, *args: np.ndarray, **kwargs: np.ndarray) -> None:
        return None  # the base class only warns; shapes are fixed here


def export(model: ScoredAE, folder: Path) -> tuple[Path, Path]:
    onnx_path, jit_path = folder / "bench_ae.onnx", folder / "bench_ae.pt"
    example = torch.zeros(4, 6)
    torch.onnx.export(model, (example,), str(onnx_path), dynamo=False, opset_version=17,
                      input_names=["features"], output_names=["loss"],
                      dynamic_axes={"features": {0: "n"}, "loss": {0: "n"}})
    ModelContract(
        name="bench_ae", kind="autoencoder", level="jet", jets="FatJet", opset=17,
        inputs=[InputSpec("features", FEATURES, [6], scaling="in_graph")],
        outputs=[OutputSpec("loss", "score")], score="loss",
    ).write(onnx_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        torch.jit.save(torch.jit.trace(model, example), str(jit_path))
    return onnx_path, jit_path


def make_chunk(n_jets: int, seed: int = 0) -> ak.Array:
    """events * jets * {features} with ~2.5 jets per event and n_jets jets in all."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.5, size=int(n_jets / 2.5) + 10)
    counts[np.cumsum(counts) > n_jets] = 0
    counts[-1] += n_jets - counts.sum()
    x = np.asarray(CENTRE) + rng.normal(size=(n_jets, 6)) * np.asarray(SCALE)
    return ak.zip({f: ak.unflatten(x[:, j].astype(np.float32), counts)
                   for j, f in enumerate(FEATURES)})


def interleaved(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times after one warm-up."""
    times: dict[str, list[float]] = {k: [] for k in funcs}
    for f in funcs.values():
        f()
    for _ in range(repeats):
        for k, f in funcs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def memory_bandwidth(mbytes: int = 256) -> float:
    """Bytes/s of a large numpy copy (read + write counted), median of 5."""
    src = np.ones(mbytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return 2 * src.nbytes / statistics.median(times)


def peak_flops(n: int = 2048) -> float:
    """FLOP/s of a large float32 matmul (numpy's BLAS, one thread), median of 5."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def flops_per_row(model: torch.nn.Module, *example: torch.Tensor) -> float:
    """Matmul FLOPs of one forward pass per row (torch's FlopCounterMode: mm, bmm, addmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*example)
    return counter.get_total_flops() / len(example[0])


class ScoreOnly(torch.nn.Module):
    """The first output (the score) of a multi-output module, for torch_wrapper."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, particles: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.inner(particles, mask)[0]


class TorchConstituentWrapper(torch_wrapper):
    """torch_wrapper on numpy inputs (particles, mask): its numpy path, no awkward."""

    def prepare_awkward(self, *args: ak.Array, **kwargs: ak.Array) -> tuple[tuple, dict]:
        return args, kwargs  # not used: the inputs are numpy

    def validate_numpy_input(self, *args: np.ndarray, **kwargs: np.ndarray) -> None:
        return None


def constituent_models() -> dict[str, tuple[torch.nn.Module, list[str]]]:
    """The recipes' default graph AE and particle VAE (random weights), with their features."""
    from coffea_ad.nn.graph_ae import GraphAutoencoder
    from coffea_ad.nn.particle_vae import ParticleVAE
    from coffea_ad.training import gae, particle_vae

    g_feats = list(gae.CONFIG["particle_features"])
    g = GraphAutoencoder(len(g_feats), gae.CONFIG["n_particles"],
                         eta_index=g_feats.index("deta"), phi_index=g_feats.index("dphi"),
                         r_c=gae.CONFIG["r_c"], hidden=gae.CONFIG["hidden"],
                         latent=gae.CONFIG["latent"])
    v_feats = list(particle_vae.CONFIG["particle_features"])
    v = ParticleVAE(len(v_feats), particle_vae.CONFIG["n_particles"],
                    hidden=particle_vae.CONFIG["hidden"], latent=particle_vae.CONFIG["latent"])
    return {"graph AE": (g.eval(), g_feats), "particle VAE": (v.eval(), v_feats)}


def padded_jets(n_jets: int, n_feat: int, n: int = 50, seed: int = 0) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """``[n_jets, n, F]`` float32 constituents (Δη, Δφ ~ 0.2 wide: ΔR graphs with edges) and
    the mask, ~30 real constituents per jet."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.poisson(30, n_jets), 1, n)
    mask = np.arange(n)[None, :] < counts[:, None]
    x = rng.normal(size=(n_jets, n, n_feat)).astype(np.float32)
    x[..., :2] *= 0.2
    x[~mask] = 0.0
    return x, mask


def kernel_ceiling(model: ScoredAE, onnx_path: Path, ours: OnnxScorer, theirs: TorchAEWrapper,
                   tmp: Path, n: int, repeats: int) -> None:
    """The bare kernels on the same flat ``[n, 6]`` float32 rows next to ours and torch_wrapper
    on the awkward chunk of those rows: ONNX Runtime's session (our batches) and the torch
    module itself (no wrapper, no awkward), with the ELUs and with identities in their place
    (the same matmuls). ``torch_wrapper / bare ONNX Runtime`` is the most any scorer that runs
    this ONNX Runtime kernel could reach (one with no work around the kernel at all)."""
    import copy

    import onnxruntime

    chunk = make_chunk(n)
    flat = ak.flatten(chunk)
    x = np.stack([ak.to_numpy(flat[f]) for f in FEATURES], axis=1).astype(np.float32)
    xt = torch.from_numpy(x)
    linear = copy.deepcopy(model)
    linear.net = torch.nn.Sequential(*(torch.nn.Identity() if isinstance(m, torch.nn.ELU)
                                       else m for m in linear.net))
    (tmp / "linear").mkdir(exist_ok=True)
    lin_onnx, _ = export(linear, tmp / "linear")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    plain = onnxruntime.InferenceSession(str(onnx_path), options,
                                         providers=["CPUExecutionProvider"])
    elu_only = onnxruntime.InferenceSession(vectorize_elu(onnx_path.read_bytes()), options,
                                            providers=["CPUExecutionProvider"])
    sessions = {"elu": ours.session, "identity": onnxruntime.InferenceSession(
        str(lin_onnx), options, providers=["CPUExecutionProvider"])}
    modules = {"elu": model, "identity": linear}
    batch = ours.batch_size

    def ort(session: Any) -> None:
        for start in range(0, n, batch):
            session.run(["loss"], {"features": x[start:start + batch]})

    def bare_torch(module: torch.nn.Module) -> None:
        with torch.no_grad():
            module(xt)

    funcs: dict[str, Callable[[], object]] = {"ours": lambda: ours(chunk),
                                               "torch_wrapper": lambda: theirs(chunk),
                                               "ort as written": lambda: ort(plain),
                                               "ort Elu rewrite": lambda: ort(elu_only)}
    for key, session in sessions.items():
        funcs[f"ort {key}"] = lambda s=session: ort(s)
        funcs[f"torch {key}"] = lambda m=modules[key]: bare_torch(m)
    med = interleaved(funcs, repeats)
    print(f"\nbare kernels on the same {n} flat rows (ONNX Runtime session, batches of "
          f"{batch}; torch module, one call), with ours and torch_wrapper on their chunk:")
    for key in sessions:
        print(f"  activations {key:<8}: ONNX Runtime {med[f'ort {key}'] * 1e3:7.2f} ms, torch "
              f"{med[f'torch {key}'] * 1e3:7.2f} ms, "
              f"ratio {med[f'torch {key}'] / med[f'ort {key}']:.2f}x")
    ort_t, torch_t = med["ort elu"], med["torch elu"]
    print(f"  the same model as written (ONNX Runtime's Elu kernel, row-broadcast Sub/Div): "
          f"{med['ort as written'] * 1e3:.2f} ms, {med['ort as written'] / ort_t:.2f}x the "
          f"session ours runs; with the Elu rewrite alone {med['ort Elu rewrite'] * 1e3:.2f} ms, "
          f"{med['ort Elu rewrite'] / ort_t:.2f}x (the standardization folded into one Gemm "
          "makes the difference)")
    print(f"  ours {med['ours'] * 1e3:.2f} ms = ONNX Runtime + {(med['ours'] - ort_t) * 1e3:.2f} "
          f"ms; torch_wrapper {med['torch_wrapper'] * 1e3:.2f} ms = torch + "
          f"{(med['torch_wrapper'] - torch_t) * 1e3:.2f} ms")
    print(f"  ours / torch_wrapper {med['torch_wrapper'] / med['ours']:.2f}x; ceiling with "
          f"nothing around ONNX Runtime's kernel: torch_wrapper / ONNX Runtime = "
          f"{med['torch_wrapper'] / ort_t:.2f}x; the ELUs are "
          f"{1 - med['ort identity'] / ort_t:.0%} of ONNX Runtime's time")


#: Constituents per jet of the padded inputs (the recipes' default).
N_PART = 50


def export_constituent(tmp: Path, label: str, module: torch.nn.Module,
                       feats: list[str]) -> tuple[Path, Path]:
    """One constituent model to ONNX with its contract (both outputs, as the recipes ship
    them) and to TorchScript (score only); returns both paths."""
    n_part = N_PART
    example = padded_jets(8, len(feats))
    onnx_path = tmp / f"{label.replace(' ', '_')}.onnx"
    outputs = list(module.output_names)
    contract = ModelContract(
        name=label.replace(" ", "_"), kind="autoencoder", level="jet", jets="FatJet",
        opset=17,
        inputs=[InputSpec("particles", feats, [n_part, len(feats)], scaling="in_graph",
                          pad_length=n_part, pad_value=0.0),
                InputSpec("mask", ["mask"], [n_part], pad_length=n_part, pad_value=0.0)],
        # per-row output shapes from one torch run: the contract states them
        outputs=[OutputSpec(o, o, list(r.shape[1:])) for o, r in zip(
            outputs, module(*(torch.from_numpy(np.asarray(a, np.float32)) for a in example)),
            strict=True)],
        score=outputs[0])
    export_onnx(module, {"particles": example[0], "mask": example[1].astype(np.float32)},
                onnx_path, output_names=outputs, opset=17, contract=contract)
    jit_path = tmp / f"{label.replace(' ', '_')}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(ScoreOnly(module), tuple(
            torch.from_numpy(np.asarray(a, np.float32)) for a in example)), str(jit_path))
    return onnx_path, jit_path


def bench_constituents(tmp: Path, chunks: list[int], repeats: int) -> None:
    for label, (module, feats) in constituent_models().items():
        onnx_path, jit_path = export_constituent(tmp, label, module, feats)
        ours = OnnxScorer(onnx_path, intra_op_threads=1)
        theirs = TorchConstituentWrapper(str(jit_path))
        x, m = padded_jets(2000, len(feats), seed=1)
        mf = m.astype(np.float32)
        a, b = ours({"particles": x, "mask": mf}), theirs(x, mf)
        diff = float(np.max(np.abs(a - b)))
        assert diff < 1e-3 * max(1.0, float(np.max(np.abs(b)))), diff
        flops = flops_per_row(module, *(torch.from_numpy(v) for v in (x[:256], mf[:256])))
        print(f"\n{label} ({len(feats)} features x {N_PART} constituents, "
              f"{flops / 1e6:.2f} MFLOP/jet in matmuls), ours batch {ours.batch_size} jets; "
              f"agreement on 2000 jets: max |diff| = {diff:.1e}")
        print(f"{'jets/chunk':>10} {'ours ms':>9} {'torch ms':>9} {'ours kjet/s':>12} "
              f"{'torch kjet/s':>13} {'ratio':>6}")
        for n in chunks:
            x, m = padded_jets(n, len(feats), seed=2)
            mf = m.astype(np.float32)
            feeds = {"particles": x, "mask": mf}
            med = interleaved({"ours": lambda s=ours, f=feeds: s(f),
                               "torch": lambda t=theirs, x=x, mf=mf: t(x, mf)}, repeats)
            print(f"{n:>10} {med['ours'] * 1e3:>9.1f} {med['torch'] * 1e3:>9.1f} "
                  f"{n / med['ours'] / 1e3:>12.1f} {n / med['torch'] / 1e3:>13.1f} "
                  f"{med['torch'] / med['ours']:>5.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # default: the SVJ dense AE of the design card, "(10,10)-6", ELU
    parser.add_argument("--hidden", default="10,10", help="hidden layer widths of the encoder")
    parser.add_argument("--latent", type=int, default=6)
    parser.add_argument("--chunks", default="1000,10000,100000,300000", help="jets per chunk")
    parser.add_argument("--batches", default="1024,4096,16384,65536,262144",
                        help="OnnxScorer batch sizes scanned at the largest chunk")
    parser.add_argument("--constituent-chunks", default="2000,10000",
                        help="jets per chunk for the graph AE and particle VAE ('' to skip)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smaller chunks, fewer repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.chunks, args.repeats, args.batches = "1000,100000", 3, "4096,65536"
        args.constituent_chunks = "2000"
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    hidden = [int(h) for h in args.hidden.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    torch.manual_seed(0)
    model = ScoredAE(hidden, args.latent).eval()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, jit_path = export(model, Path(tmp))
        theirs = TorchAEWrapper(str(jit_path))
        ours = OnnxScorer(onnx_path, intra_op_threads=1)  # default batch size

        import onnxruntime

        print(f"model: 6-{'-'.join(map(str, hidden))}-{args.latent}-"
              f"{'-'.join(map(str, reversed(hidden)))}-6 ELU + MAE score, in-graph scaling")
        print(f"torch {torch.__version__} (1 thread) vs onnxruntime {onnxruntime.__version__} "
              f"(1 intra-op thread, provider {ours.provider}, batch {ours.batch_size} rows); "
              f"medians of >= {args.repeats} interleaved repeats; CPU only (no GPU on this "
              "machine)")

        # agreement first: a benchmark of wrong numbers is worth nothing
        check = make_chunk(5000, seed=1)
        a, b = ours(check), theirs(check)
        diff = float(ak.max(abs(ak.flatten(a) - ak.flatten(b))))
        assert ak.all(ak.num(a) == ak.num(b))
        assert diff < 1e-4, diff
        print(f"agreement on 5000 jets: max |ours - torch_wrapper| = {diff:.2e}\n")

        print(f"{'jets/chunk':>10} {'ours ms':>9} {'torch ms':>9} {'ours Mjet/s':>12} "
              f"{'torch Mjet/s':>13} {'ratio':>6}")
        best = 0.0
        for n in chunks:
            chunk = make_chunk(n)
            # small chunks are cheap: more repeats so that their medians are as stable
            repeats = max(args.repeats, min(100, 1_000_000 // n))
            med = interleaved({"ours": lambda c=chunk: ours(c), "torch": lambda c=chunk: theirs(c)},
                              repeats)
            print(f"{n:>10} {med['ours'] * 1e3:>9.2f} {med['torch'] * 1e3:>9.2f} "
                  f"{n / med['ours'] / 1e6:>12.2f} {n / med['torch'] / 1e6:>13.2f} "
                  f"{med['torch'] / med['ours']:>5.2f}x"
                  + ("  (target >= 2x at >= 100k jets: "
                     f"{'met' if med['torch'] / med['ours'] >= 2 else 'NOT met'})"
                     if n >= 100_000 else ""))
            if n >= 100_000:
                best = max(best, n / med["ours"])

        n = chunks[-1]
        chunk = make_chunk(n)
        print(f"\nbatch-size scan, ours, {n} jets/chunk (torch_wrapper runs the chunk in one call)")
        scorers = {bs: OnnxScorer(onnx_path, intra_op_threads=1, batch_size=bs) for bs in batches}
        funcs = {f"ours bs={bs}": (lambda s=s: s(chunk)) for bs, s in scorers.items()}
        funcs["torch"] = lambda: theirs(chunk)
        med = interleaved(funcs, args.repeats)
        for key, t in med.items():
            print(f"{key:>16}: {t * 1e3:8.2f} ms  {n / t / 1e6:6.2f} Mjet/s  "
                  f"ratio vs torch {med['torch'] / t:5.2f}x")

        one = make_chunk(2, seed=3)
        med = interleaved({"ours": lambda: ours(one), "torch": lambda: theirs(one)},
                          max(200, args.repeats))
        print(f"\nper-call overhead (1 event, 2 jets): ours {med['ours'] * 1e6:.0f} us, "
              f"torch_wrapper {med['torch'] * 1e6:.0f} us, ratio {med['torch'] / med['ours']:.2f}x")

        # limits: what one core of this machine could do for this model
        bw, peak = memory_bandwidth(), peak_flops()
        jet_bytes = 6 * 4 + 4  # float32 features in, float32 score out
        flops = flops_per_row(model, torch.zeros(4096, 6))
        rate = best or n / med["ours"]
        print(f"\nlimits (one core): memory bandwidth {bw / 1e9:.1f} GB/s (numpy copy, read + "
              f"write) / {jet_bytes} B per jet = {bw / jet_bytes / 1e6:.0f} Mjet/s; peak "
              f"{peak / 1e9:.1f} GFLOP/s (float32 matmul 2048^3) / {flops:.0f} matmul FLOP per "
              f"jet = {peak / flops / 1e6:.0f} Mjet/s")
        print(f"ours at >= 100k jets: {rate / 1e6:.2f} Mjet/s = {rate * jet_bytes / bw:.1%} of "
              f"the bandwidth limit, {rate * flops / peak:.1%} of the FLOP limit")
        kernel_ceiling(model, onnx_path, ours, theirs, Path(tmp), max(chunks), args.repeats)

        if args.constituent_chunks:
            bench_constituents(Path(tmp), [int(c) for c in args.constituent_chunks.split(",")],
                               args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
