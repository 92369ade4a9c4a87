"""Checkpoints: each chunk's output saved under a fingerprint of the processor configuration,
so an interrupted run resumes without redoing finished chunks."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cloudpickle
from coffea.processor.checkpointer import CheckpointerABC

from coffea_ad.execution.provenance import contract_hashes, model_hashes

__all__ = ["ChunkCheckpointer", "checkpointer", "processor_fingerprint"]


def _simple(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_simple(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _simple(v) for k, v in value.items())
    return False


def _plain(obj: Any, *, private: bool = True) -> dict[str, Any]:
    """Plain attributes of ``obj`` (numbers, strings and containers of them) as JSON data."""
    params = {k: v for k, v in sorted(getattr(obj, "__dict__", {}).items())
              if (private or not k.startswith("_")) and _simple(v)}
    return json.loads(json.dumps(params, default=str, allow_nan=True))


def processor_fingerprint(proc: Any) -> dict[str, Any]:
    """Everything that changes a chunk's result: the processor's class and plain attributes,
    its scorers' settings (``nonfinite``, ``jets``, ``batch_size``...), the sha256 of its
    model files and of their contracts, and the package versions (coffea-ad, coffea,
    onnxruntime, ...)."""
    from coffea_ad.execution import provenance

    cls = type(proc)
    # a scorer's private attributes hold counters that change while it runs
    scorers = {str(Path(s.model_path).resolve()): _plain(s, private=False)
               for s in provenance.scorers_of(proc)}
    return {"class": f"{cls.__module__}.{cls.__qualname__}",
            "params": _plain(proc),
            "scorers": scorers,
            "models": model_hashes(proc),
            "contracts": contract_hashes(proc),
            "versions": provenance._versions()}


class ChunkCheckpointer(CheckpointerABC):
    """Saves each chunk's output under ``checkpoint_dir`` and reloads it when the same chunk
    of the same file is processed again by the same processor configuration.

    Unlike coffea's ``SimpleCheckpointer`` the path holds a fingerprint of the processor
    configuration (a changed threshold or model never reuses stale outputs) and the file name
    (two copies of a file share a UUID), and files are written to a temporary name then
    renamed, so a run killed mid-write leaves no truncated checkpoint.

    Checkpoints are coffea outputs (cloudpickle + lz4, like ``coffea.util.save``): only resume
    from a directory you wrote. Remote paths (``root://``, ``s3://``) go through fsspec.

    Args:
        checkpoint_dir: folder (or fsspec URL) shared by the client and all workers.
        fingerprint: short hash of the processor configuration (see
            :func:`processor_fingerprint`).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike[str], fingerprint: str) -> None:
        import fsspec

        self.fs, root = fsspec.url_to_fs(str(checkpoint_dir))
        self.root = f"{root.rstrip('/')}/{fingerprint}"

    def filepath(self, metadata: Mapping[str, Any]) -> str:
        """Path of the checkpoint of one chunk."""
        name = hashlib.sha256(str(metadata["filename"]).encode()).hexdigest()[:16]
        return (f"{self.root}/{metadata['dataset']}/{name}-{metadata['fileuuid']}/"
                f"{metadata['treename']}/{metadata['entrystart']}-{metadata['entrystop']}.coffea")

    def load(self, metadata: Any, processor_instance: Any) -> Any:
        path = self.filepath(metadata)
        if not self.fs.exists(path):
            return None
        try:
            with self.fs.open(path, "rb", compression="lz4") as fin:
                output = cloudpickle.load(fin)
        except Exception:  # noqa: BLE001 -- an unreadable checkpoint is recomputed, not trusted
            return None
        # re-tag the chunk records so run_info counts chunks resumed from checkpoints
        chunks = output.get("out", {}).get("chunks", {})
        for spans in chunks.values():
            for span, records in spans.items():
                spans[span] = [("checkpoint", n) for _, n in records]
        return output

    def save(self, output: Any, metadata: Any, processor_instance: Any) -> None:
        if output.get("out", {}).get("errors"):
            return  # a chunk skipped as unreadable is retried by the next run
        path = self.filepath(metadata)
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with self.fs.open(tmp, "wb", compression="lz4") as fout:
            cloudpickle.dump(output, fout)
        self.fs.mv(tmp, path)  # a rename on local disks: atomic, no half-written checkpoint


def checkpointer(checkpoint_dir: str | os.PathLike[str] | None, proc: Any
                  ) -> tuple[ChunkCheckpointer | None, dict[str, Any] | None]:
    if checkpoint_dir is None:
        return None, None
    fp = processor_fingerprint(proc)
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    ckpt = ChunkCheckpointer(checkpoint_dir, digest)
    ckpt.fs.makedirs(ckpt.root, exist_ok=True)
    with ckpt.fs.open(f"{ckpt.root}/processor.json", "w") as fout:
        fout.write(json.dumps(fp, indent=2, sort_keys=True) + "\n")
    return ckpt, {"dir": str(checkpoint_dir), "fingerprint": digest, "processor": fp}


