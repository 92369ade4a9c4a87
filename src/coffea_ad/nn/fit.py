"""The training loop shared by every model family.

Nadam, ReduceLROnPlateau and early stopping on the validation loss (restoring the best
weights), seeded, with optional per-row sample weights, recording the loss curves.
A model plugs in by defining ``training_loss(*tensors) -> [batch]`` (per-row loss); an extra
scalar penalty of the per-row loss and auxiliary columns (e.g. DisCo against m_T) can be added
with ``penalty``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from coffea_ad._optional import require
from coffea_ad.errors import InvalidArgumentError

torch = require("torch", purpose="coffea_ad.nn")

__all__ = ["EpochReport", "History", "fit", "predict", "report_epochs"]

Arrays = Sequence[np.ndarray]


@dataclass(frozen=True)
class EpochReport:
    """What :func:`fit` hands the epoch callback after each epoch (epochs counted from 1)."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    lr: float
    best_val_loss: float

    def line(self) -> str:
        """One line for a terminal, e.g. ``epoch   3/100  loss 0.1234  val loss 0.1301 ...``."""
        width = len(str(self.epochs))
        return (f"epoch {self.epoch:{width}d}/{self.epochs}  loss {self.train_loss:.5g}  "
                f"val loss {self.val_loss:.5g}  lr {self.lr:.2e}  "
                f"(best val loss {self.best_val_loss:.5g})")


# Set by the caller around a whole recipe (the CLI), so that recipes need not pass a callback
# through every fit() call they make.
_EPOCH_CALLBACK: contextvars.ContextVar[Callable[[EpochReport], None] | None] = (
    contextvars.ContextVar("coffea_ad_epoch_callback", default=None))


@contextlib.contextmanager
def report_epochs(callback: Callable[[EpochReport], None] | None) -> Iterator[None]:
    """Call ``callback(EpochReport)`` after every epoch of every :func:`fit` inside the block
    (``coffea-ad train`` prints :meth:`EpochReport.line` to stderr; ``None``: nothing)."""
    token = _EPOCH_CALLBACK.set(callback)
    try:
        yield
    finally:
        _EPOCH_CALLBACK.reset(token)


@dataclass
class History:
    """Loss curves of one training run (JSON-serializable with :meth:`to_dict`)."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tensors(arrays: Arrays) -> list:
    return [torch.as_tensor(np.ascontiguousarray(a)) for a in arrays]


def _mean_loss(model, tensors: list, aux: list, weights, batch_size: int,
               penalty: Callable | None) -> float:
    """Weighted mean of the per-row loss (+ penalty, averaged over batches of ``batch_size``:
    a penalty such as DisCo is O(batch²)) over a whole sample, eval mode, no gradient."""
    model.eval()
    total, wsum, pen, n_batches = 0.0, 0.0, 0.0, 0
    n = tensors[0].shape[0]
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            per_row = model.training_loss(*[t[sl] for t in tensors])
            w = torch.ones_like(per_row) if weights is None else weights[sl]
            total += float((per_row * w).sum())
            wsum += float(w.sum())
            if penalty is not None:
                pen += float(penalty(per_row, [a[sl] for a in aux], w))
                n_batches += 1
    return total / max(wsum, 1e-30) + pen / max(n_batches, 1)


def fit(model, train: Arrays, val: Arrays, *, train_weights: np.ndarray | None = None,
        val_weights: np.ndarray | None = None, epochs: int = 100, batch_size: int = 256,
        lr: float = 1e-3, patience: int = 10, lr_patience: int = 4, lr_factor: float = 0.5,
        min_lr: float = 1e-6, seed: int = 0, threads: int | None = 1,
        penalty: Callable[[Any, list, Any], Any] | None = None,
        aux_train: Arrays = (), aux_val: Arrays = (), verbose: bool = False) -> History:
    """Train ``model`` in place and return its loss curves.

    Args:
        model: a ``torch.nn.Module`` with ``training_loss(*tensors) -> [batch]``.
        train, val: the tensors ``training_loss`` takes, as numpy arrays with equal first axis
            (e.g. ``[features]`` or ``[particles, mask]``).
        train_weights, val_weights: per-row weights (e.g. p_T-flattening); ``None`` = 1.
        epochs: maximum number of passes over ``train``.
        batch_size: rows per optimizer step.
        lr: initial learning rate of Nadam (Dozat, ICLR 2016 workshop).
        patience: stop after this many epochs without a better validation loss; the weights of
            the best epoch are restored.
        lr_patience, lr_factor, min_lr: ReduceLROnPlateau on the validation loss.
        seed: seeds the shuffling and any sampling in ``training_loss`` (VAE noise). The
            initial weights are the caller's: build the model after ``torch.manual_seed``.
        threads: ``torch.set_num_threads`` for the run (restored afterwards); ``None`` leaves it.
        penalty: optional ``penalty(per_row_loss, aux_batch, batch_weights) -> scalar``
            added to the batch loss, e.g. ``lambda l, aux, w: 10 * distance_correlation(l,
            aux[0], weights=w)`` (DisCo, :func:`coffea_ad.nn.losses.distance_correlation`).
        aux_train, aux_val: extra per-row arrays batched with the inputs and handed to
            ``penalty`` only (e.g. m_T), not to the model.
        verbose: print one line per epoch (besides any callback set with
            :func:`report_epochs`).

    Returns:
        :class:`History` with per-epoch train/validation losses and learning rates.
    """
    n_train = len(train[0])
    if any(len(a) != n_train for a in [*train, *aux_train]) or any(
            len(a) != len(val[0]) for a in [*val, *aux_val]):
        raise InvalidArgumentError(f"fit: every train (val) array needs the same first axis; found "
                         f"{[len(a) for a in [*train, *aux_train]]} and "
                         f"{[len(a) for a in [*val, *aux_val]]}")
    if n_train == 0 or len(val[0]) == 0:
        raise InvalidArgumentError(f"fit: expected non-empty train and validation samples, found "
                         f"{n_train} and {len(val[0])} rows")
    callback = _EPOCH_CALLBACK.get()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        tr, va = _tensors(train), _tensors(val)
        aux_tr, aux_va = _tensors(aux_train), _tensors(aux_val)
        tw = None if train_weights is None else torch.as_tensor(
            np.asarray(train_weights, dtype=np.float32))
        vw = None if val_weights is None else torch.as_tensor(
            np.asarray(val_weights, dtype=np.float32))
        if tw is not None:
            tw = tw / tw.mean()  # keep the loss scale (and so the learning rate) weight-free
        if vw is not None:
            vw = vw / vw.mean()
        opt = torch.optim.NAdam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=lr_factor, patience=lr_patience, min_lr=min_lr)
        hist = History()
        best_state = copy.deepcopy(model.state_dict())
        since_best = 0
        t0 = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(n_train, generator=gen)
            total, wsum = 0.0, 0.0
            for start in range(0, n_train, batch_size):
                idx = order[start:start + batch_size]
                per_row = model.training_loss(*[t[idx] for t in tr])
                w = torch.ones_like(per_row) if tw is None else tw[idx]
                loss = (per_row * w).sum() / w.sum()
                if penalty is not None:
                    loss = loss + penalty(per_row, [a[idx] for a in aux_tr], w)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                wsum += len(idx)
            # with a penalty, validate in training-size batches so the penalty means the same
            val_loss = _mean_loss(model, va, aux_va, vw,
                                  batch_size if penalty is not None else max(batch_size, 4096),
                                  penalty)
            hist.train_loss.append(total / wsum)
            hist.val_loss.append(val_loss)
            hist.lr.append(opt.param_groups[0]["lr"])
            sched.step(val_loss)
            improved = val_loss < hist.best_val_loss
            if improved:
                hist.best_val_loss, hist.best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
            report = EpochReport(epoch + 1, epochs, hist.train_loss[-1], val_loss, hist.lr[-1],
                                 hist.best_val_loss)
            if callback is not None:
                callback(report)
            if verbose:
                print(report.line())
            if not improved and since_best >= patience:
                hist.stopped_early = True
                break
        model.load_state_dict(best_state)
        model.eval()
        hist.seconds = time.perf_counter() - t0
        return hist
    finally:
        torch.set_num_threads(old_threads)


def predict(model, inputs: Arrays, *, batch_size: int = 8192) -> tuple[np.ndarray, ...]:
    """Run ``model.forward`` in eval mode over numpy inputs in batches.

    Args:
        model: a module whose ``forward(*inputs)`` returns a tensor or a tuple of tensors.
        inputs: numpy arrays with equal first axis.
        batch_size: rows per call.

    Returns:
        Tuple of numpy arrays, one per forward output, concatenated over batches.
    """
    model.eval()
    tensors = _tensors(inputs)
    n = tensors[0].shape[0]
    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, max(n, 1), batch_size):
            result = model(*[t[start:start + batch_size] for t in tensors])
            if not isinstance(result, tuple):
                result = (result,)
            if not outs:
                outs = [[] for _ in result]
            for o, r in zip(outs, result, strict=True):
                o.append(r.numpy())
    return tuple(np.concatenate(o) for o in outs)
