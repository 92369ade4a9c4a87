"""ONNX Runtime in the form of coffea's ``ml_tools`` wrappers (``torch_wrapper``, ...).

coffea's wrappers share one contract (:class:`coffea.ml_tools.numpy_call_wrapper`): the user
subclasses a wrapper and overrides ``prepare_awkward(*arrays) -> (args, kwargs)`` to turn
awkward (or dask-awkward) arrays into numpy-convertible ones; calling the wrapper then
dispatches on awkward / dask-awkward / numpy, runs ``numpy_call(*args, **kwargs)`` and converts
back. coffea has no ONNX Runtime wrapper; :class:`OnnxWrapper` (also exported as
``onnx_wrapper``, coffea's spelling) is one, built on :class:`OnnxScorer`, so it brings the
scorer's guarantees: one session per worker process, created lazily and never pickled (the
model bytes travel with the wrapper), the sidecar contract checked on the client and again
on the session, the contract's scaling applied, batching, NaN/inf policy, and correctly shaped
empty output for empty chunks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from coffea.ml_tools.helper import numpy_call_wrapper

from coffea_ad.errors import ModelContractError
from coffea_ad.inference.scorer import OnnxScorer

__all__ = ["OnnxWrapper", "onnx_wrapper"]


class OnnxWrapper(numpy_call_wrapper):
    """coffea ``numpy_call_wrapper`` running an ONNX model with its sidecar contract.

    Subclass it and override :meth:`prepare_awkward` exactly as for coffea's
    ``torch_wrapper``: return ``(args, kwargs)`` whose positional arrays are the model inputs in
    contract order (or keyword arrays named like the inputs). The default
    :meth:`prepare_awkward` takes one ``jets * {feature: float}`` record array (e.g. from
    :func:`coffea_ad.features.jet_features`, flattened) and stacks the contract's features.

    Args:
        model_path: the ``.onnx`` file (sidecar ``.json`` next to it).
        output: which model output ``numpy_call`` returns; default the contract's score.
            ``None`` returns the dict of every output.
        **scorer_kwargs: passed to :class:`OnnxScorer` (providers, batch_size, nonfinite, ...).
    """

    def __init__(self, model_path: str | os.PathLike[str], *, output: str | None = "",
                 **scorer_kwargs: Any) -> None:
        super().__init__()
        self.scorer = OnnxScorer(model_path, **scorer_kwargs)
        self.output = self.scorer.contract.score if output == "" else output
        if self.output is not None and self.output not in self.scorer.contract.output_names:
            raise ModelContractError(
                f"model {self.scorer.contract.name!r} has outputs "
                f"{self.scorer.contract.output_names}, asked for {self.output!r}"
            )

    @property
    def contract(self) -> Any:
        """The model's :class:`~coffea_ad.inference.ModelContract`."""
        return self.scorer.contract

    def _feeds(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
        names = self.contract.input_names
        if len(args) > len(names):
            raise ModelContractError(
                f"model {self.contract.name!r} has {len(names)} input(s) {names}, given "
                f"{len(args)} positional arrays"
            )
        feeds = {name: np.asarray(a) for name, a in zip(names, args, strict=False)}
        for name, value in kwargs.items():
            if name in feeds:
                raise ModelContractError(f"input {name!r} given both by position and by name")
            feeds[name] = np.asarray(value)
        return feeds

    def validate_numpy_input(self, *args: Any, **kwargs: Any) -> None:
        """The scorer's contract checks (input names, per-row shapes, dtypes, row counts),
        before any session is used."""
        self.scorer._check_numpy_inputs(self._feeds(args, kwargs))

    def numpy_call(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model: positional arrays in contract input order, or keyword by name."""
        outs = self.scorer._run_numpy(self._feeds(args, kwargs))
        return outs if self.output is None else outs[self.output]

    def prepare_awkward(self, *arrays: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Default: one flat ``n * {feature: number}`` record array -> the ``[n, F]`` input of a
        single-input contract, columns in contract order. Override for anything else."""
        if len(arrays) != 1 or kwargs or len(self.contract.inputs) != 1:
            raise ModelContractError(
                f"{type(self).__name__}.prepare_awkward: the default takes one record array "
                f"of the features {self.contract.features} for a single-input model; model "
                f"{self.contract.name!r} has inputs {self.contract.input_names}: override "
                "prepare_awkward"
            )
        (records,) = arrays
        lib = self.get_awkward_lib(records)
        spec = self.contract.inputs[0]
        columns = [lib.values_astype(records[f], spec.dtype)[:, np.newaxis]
                   for f in spec.features]
        return (lib.concatenate(columns, axis=1),), {}


#: coffea's lowercase spelling (``torch_wrapper``, ``xgboost_wrapper``).
onnx_wrapper = OnnxWrapper
