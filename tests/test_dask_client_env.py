"""The LocalCluster of ``dask_client`` starts workers without distributed's
MALLOC_TRIM_THRESHOLD_, even when the client process inherited it (it makes every large
numpy temporary a fresh mmap: the SVJ chain ran at 0.65 of its in-process rate on one worker
with it, 1.0 without), and its scheduler leaves port 8787 to whoever holds it."""

from __future__ import annotations

import contextlib
import os
import socket
import warnings

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


def test_two_clusters_at_once_while_8787_is_taken_give_no_warning():
    from coffea_ad.execution import dask_client

    # hold 8787 as a user's running dashboard would (or find it already held)
    holder = socket.socket()
    with contextlib.suppress(OSError):
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # distributed's "already in use" is a UserWarning
            with dask_client(workers=1, threads=1) as one, \
                    dask_client(workers=1, threads=1) as two:
                bound = [c.run_on_scheduler(lambda dask_scheduler: sorted(
                    s.getsockname()[:2] for s in dask_scheduler.http_server._sockets.values()))
                    for c in (one, two)]
                assert one.submit(sum, [1, 2]).result() == 3
                assert two.submit(sum, [3, 4]).result() == 7
    finally:
        holder.close()
    # one loopback socket each, on a port the OS picked (not 8787, not the same)
    assert [len(b) for b in bound] == [1, 1]
    (host_one, port_one), (host_two, port_two) = bound[0][0], bound[1][0]
    assert host_one == host_two == "127.0.0.1"
    assert 8787 not in (port_one, port_two)
    assert port_one != port_two
