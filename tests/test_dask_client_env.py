"""The LocalCluster of ``dask_client`` starts workers without distributed's
MALLOC_TRIM_THRESHOLD_, even when the client process inherited it (it makes every large numpy temporary a fresh mmap: the SVJ chain ran
at 0.65 of its in-process rate on one worker with it, 1.0 without)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("distributed")


def _env(name: str) -> str | None:
    return os.environ.get(name)


def _config(key: str):
    import dask

    return dask.config.get(key)


def test_workers_start_without_malloc_trim_threshold_but_with_one_thread_numerics(
        monkeypatch):
    import dask

    from coffea_ad.execution import dask_client

    # distributed's own default, which the cluster must not pass on
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"]
    # a cluster started earlier in this process by distributed's defaults leaves the variable
    # in os.environ (its nanny writes it there before spawning), which workers would inherit
    # whatever the configuration says: the workers here must still start without it
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with dask_client(workers=1, threads=1) as client:
        trim = client.run(_env, "MALLOC_TRIM_THRESHOLD_")
        omp = client.run(_env, "OMP_NUM_THREADS")
        profiling = client.run(_config, "distributed.worker.profile.enabled")
        assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # also for worker restarts
    assert list(trim.values()) == [None]
    # the process environment is given back as it was found
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert list(omp.values()) == ["1"]  # the other pre-spawn settings are kept
    assert list(profiling.values()) == [False]  # no dashboard, no stack sampling
    # the user's configuration is left as it was
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"]
    assert dask.config.get("distributed.worker.profile.enabled")


def test_without_an_inherited_variable_none_is_added(monkeypatch):
    from coffea_ad.execution import dask_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with dask_client(workers=1, threads=1) as client:
        trim = client.run(_env, "MALLOC_TRIM_THRESHOLD_")
    assert list(trim.values()) == [None]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
