"""ONNX Runtime's CUDA execution provider against its CPU provider, on the same chunks: the
scorer alone and the full SVJ chain.

Needs ``onnxruntime-gpu`` (not ``onnxruntime``) and a CUDA GPU; without the CUDA provider
it stops with one line saying so (``--gpu-provider cpu`` runs every step with the CPU on
both sides, to check the script itself on a machine without a GPU).

1. scorer: the same jets scored by :class:`coffea_ad.inference.OnnxScorer` with the CPU
   provider (one intra-op thread, and all cores) and with the CUDA provider (its default
   batch, :attr:`OnnxScorer.gpu_batch_size`, and other sizes), for
   - the dense AE of ``bench_inference.py`` (6-10-10-6-10-10-6 ELU, features -> score),
   - the shipped graph AE ``models/svj_gae.onnx`` (50 constituents, 7 features; the
     normalized ΔR adjacency is derived by the scorer on the host, batch by batch),
   - the particle VAE of ``training/particle_vae.py`` (default architecture, random weights);
   scores of the two providers are compared (max |difference|) before anything is timed.
2. chain: the SVJ processor (coffea Runner, iterative executor, the default chunk size) over
   the generated files of ``bench_chain.py`` (cached in ``--workdir``) with the dense AE and
   with ``svj_gae``, CPU provider vs CUDA provider, next to the read-only pass; the
   histograms of both providers are compared bin by bin; then the per-stage profile of one
   CUDA pass (read, features/graphs, ONNX Runtime, ...).

Timings are medians of interleaved repeats after a warm-up (session creation, CUDA context,
numba compilation).

    python benchmarks/bench_gpu.py --workdir /tmp/coffea_ad_bench
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the chain's numerics: one thread, as on workers

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_chain  # noqa: E402
import bench_inference  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def short(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda`` (labels)."""
    return provider.removesuffix("ExecutionProvider").lower()


def scorers_for(path: Path, gpu: str, batches: list[int | None]) -> dict[str, Any]:
    from coffea_ad.inference import OnnxScorer
    from coffea_ad.inference.scorer import GPU_PROVIDERS

    out: dict[str, Any] = {
        "cpu, 1 thread": OnnxScorer(path, providers=["cpu"], intra_op_threads=1),
        f"cpu, {os.cpu_count()} threads": OnnxScorer(path, providers=["cpu"],
                                                     intra_op_threads=os.cpu_count()),
    }
    for bs in batches:
        scorer = OnnxScorer(path, providers=[gpu], batch_size=bs)
        if scorer.provider != gpu:  # ONNX Runtime falls back to the CPU with a warning only
            raise SystemExit(f"bench_gpu: {path.name} runs on {scorer.provider}, not {gpu}")
        size = scorer.gpu_batch_size if gpu in GPU_PROVIDERS else scorer.batch_size
        out[f"{short(gpu)}, batch {size}{' (default)' if bs is None else ''}"] = scorer
    return out


def bench_scorer(label: str, scorers: dict[str, Any], feeds: Callable[[int], Any],
                 chunks: list[int], repeats: int) -> None:
    """Agreement, then jets/s of each scorer per chunk size, relative to one CPU thread."""
    ref_key = next(iter(scorers))
    check = feeds(4096)
    ref = np.asarray(scorers[ref_key](check))
    providers = {k: s.provider for k, s in scorers.items()}
    print(f"\n{label}: providers that ran {sorted(set(providers.values()))}")
    for key, scorer in scorers.items():
        got = np.asarray(scorer(check))
        diff = float(np.max(np.abs(got - ref)))
        scale = float(np.max(np.abs(ref)))
        assert np.all(np.isfinite(got)) and diff <= 1e-4 * max(1.0, scale), (key, diff)
        print(f"  agreement with {ref_key}: {key}: max |diff| {diff:.1e} (scores up to "
              f"{scale:.3g})")
    print(f"  {'jets/chunk':>10}  " + "  ".join(f"{k:>26}" for k in scorers))
    for n in chunks:
        x = feeds(n)
        times: dict[str, list[float]] = {k: [] for k in scorers}
        for k, s in scorers.items():  # warm-up: the first call of a size allocates
            s(x)
        for _ in range(repeats):
            for k, s in scorers.items():
                t = time.perf_counter()
                s(x)
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        ref_t = med[ref_key]
        print(f"  {n:>10}  " + "  ".join(
            f"{n / t / 1e6:>9.3f} Mjet/s ({ref_t / t:>6.1f}x)" for t in med.values()))


def scorer_part(args: argparse.Namespace, gpu: str, tmp: Path) -> None:
    import torch

    torch.manual_seed(0)
    chunks = [int(c) for c in args.chunks.split(",")]
    cchunks = [int(c) for c in args.constituent_chunks.split(",")]
    model = bench_inference.ScoredAE([10, 10], 6).eval()
    dense_path, _ = bench_inference.export(model, tmp)

    def dense_feeds(n: int) -> Any:
        return bench_inference.make_chunk(n, seed=n)

    scorers = scorers_for(dense_path, gpu, [None, 65536, 1 << 20])
    bench_scorer("dense AE 6-10-10-6-10-10-6 (awkward chunk in, scores on the jets out)",
                 {k: _Flat(s) for k, s in scorers.items()}, dense_feeds, chunks, args.repeats)

    def padded(n_feat: int) -> Callable[[int], Any]:
        def make(n: int) -> Any:
            x, m = bench_inference.padded_jets(n, n_feat, seed=n)
            return {"particles": x, "mask": m.astype(np.float32)}
        return make

    gae = REPO / "models" / "svj_gae.onnx"
    bench_scorer("shipped graph AE models/svj_gae.onnx (padded [n, 50, 7] + mask in)",
                 scorers_for(gae, gpu, [None, 1024, 8192]), padded(7), cchunks, args.repeats)
    module, feats = bench_inference.constituent_models()["particle VAE"]
    vae_path, _ = bench_inference.export_constituent(tmp, "particle VAE", module, feats)
    bench_scorer(f"particle VAE (padded [n, 50, {len(feats)}] + mask in)",
                 scorers_for(vae_path, gpu, [None, 1024, 8192]), padded(len(feats)), cchunks,
                 args.repeats)


class _Flat:
    """A scorer whose awkward output is flattened to numpy (for the comparisons)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.provider = scorer.provider

    def __call__(self, x: Any) -> Any:
        import awkward as ak

        return ak.to_numpy(ak.flatten(self.scorer(x)))


def compare_outputs(a: Any, b: Any) -> tuple[int, int, float]:
    """(histogram bins compared, bins that differ, largest |difference| in a bin) over every
    histogram of two processor outputs."""
    import hist

    if isinstance(a, hist.Hist):
        va, vb = a.values(flow=True), b.values(flow=True)
        return va.size, int(np.count_nonzero(va != vb)), float(np.max(np.abs(va - vb)))
    if isinstance(a, dict):
        total = [0, 0, 0.0]
        for key in a:
            if key == "run_info" or key not in b:  # bookkeeping: providers differ by design
                continue
            n, d, m = compare_outputs(a[key], b[key])
            total = [total[0] + n, total[1] + d, max(total[2], m)]
        return total[0], total[1], total[2]
    return 0, 0, 0.0


def chain_part(args: argparse.Namespace, gpu: str) -> None:
    from coffea_ad.execution import run_processor
    from coffea_ad.processors.svj import SVJProcessor

    generated, dense_model = bench_chain.prepare(args.workdir, args.events, args.events_per_file,
                                                 args.seed)
    # the cached fileset names absolute paths: find the files where the cache is now (a copy
    # of the work folder on the GPU machine)
    samples = args.workdir / f"samples_{args.events}_{args.events_per_file}"
    for entry in generated.values():
        entry["files"] = {(p if Path(p).is_file() else
                           str(samples / Path(p).parent.name / Path(p).name)): tree
                          for p, tree in entry["files"].items()}
    fileset = {f"{name}_{k}": entry for k in range(args.replicas)
               for name, entry in generated.items()}
    n_events = sum(d["metadata"]["nevents"] for d in fileset.values())
    first_file = next(iter(generated["qcd"]["files"]))
    print(f"\nchain: {n_events} events per run, iterative executor, chunksize {args.chunksize}")
    for key, model in {"dense": dense_model, "gae": REPO / "models" / "svj_gae.onnx"}.items():
        chains = {
            "cpu": SVJProcessor(model, tag_threshold=0.5,
                                scorer_options={"providers": ["cpu"], "intra_op_threads": 1}),
            "gpu": SVJProcessor(model, tag_threshold=0.5, scorer_options={"providers": [gpu]}),
        }
        reader = bench_chain.ReadOnly(bench_chain.branches_read(chains["cpu"], first_file))
        outs: dict[str, Any] = {}

        def run(proc: Any, name: str | None = None) -> float:
            t = time.perf_counter()
            out = run_processor(fileset, proc, chunksize=args.chunksize, executor="iterative")
            wall = time.perf_counter() - t
            assert out["run_info"]["entries_processed"] == n_events, out["run_info"]
            if name is not None:
                outs[name] = out
            return n_events / wall

        med = bench_chain.show(bench_chain.alternate(
            {"read-only": lambda: run(reader),
             "chain, cpu provider": lambda: run(chains["cpu"], "cpu"),
             # (gpu side named apart: with --gpu-provider cpu both sides are the CPU)
             f"chain, {short(gpu)} provider ": lambda: run(chains["gpu"], "gpu")},
            args.repeats))
        providers = {p: outs[p]["run_info"].get("onnx_providers") for p in chains}
        n, d, m = compare_outputs(outs["cpu"], outs["gpu"])
        rates = list(med.values())
        print(f"  [{key}] {Path(model).name}: providers that ran {providers}")
        print(f"  [{key}] chain/read-only: cpu {rates[1] / rates[0]:.2f}, {short(gpu)} "
              f"{rates[2] / rates[0]:.2f}; {short(gpu)}/cpu = {rates[2] / rates[1]:.2f}")
        print(f"  [{key}] histograms {short(gpu)} vs cpu: {d} of {n} bins differ (largest "
              f"|difference| {m:.3g})")
        stages, _ = bench_chain.profile_stages(fileset, reader, chains["gpu"], args.chunksize,
                                               n_events)
        total = sum(stages.values())
        print(f"  [{key}] per-stage profile of one {short(gpu)} pass: ms per 1000 events")
        for stage, sec in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"      {stage:<40} {sec / n_events * 1e6:8.1f}  {sec / total:6.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-provider", default="cuda",
                        help="provider compared with the CPU ('cpu' checks the script here)")
    parser.add_argument("--chunks", default="10000,100000,1000000",
                        help="jets per chunk for the dense AE")
    parser.add_argument("--constituent-chunks", default="2000,20000",
                        help="jets per chunk for the constituent models")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=20000, help="qcd events (svj: half)")
    parser.add_argument("--events-per-file", type=int, default=10000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--chunksize", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/coffea_ad_bench"))
    parser.add_argument("--no-chain", action="store_true")
    parser.add_argument("--no-scorer", action="store_true")
    args = parser.parse_args(argv)

    import onnxruntime

    from coffea_ad.inference.providers import available_providers, resolve_provider_name

    gpu = resolve_provider_name(args.gpu_provider)
    if gpu not in available_providers():
        print(f"bench_gpu: provider {gpu} is not in this onnxruntime build "
              f"({onnxruntime.__version__}: {available_providers()}); install onnxruntime-gpu "
              "on a machine with a CUDA GPU", file=sys.stderr)
        return 2
    print(f"onnxruntime {onnxruntime.__version__}, providers {available_providers()}, "
          f"{os.cpu_count()} CPU cores")
    if not args.no_scorer:
        with tempfile.TemporaryDirectory() as tmp:
            scorer_part(args, gpu, Path(tmp))
    if not args.no_chain:
        chain_part(args, gpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
