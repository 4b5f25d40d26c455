"""Audits: every tensor's statistics and histogram, here or on a Dask distributed cluster.

``audit(source, scheduler=None)`` summarizes each tensor with :func:`summarize`, one tensor at a
time. With a scheduler (``local:N`` starts a ``LocalCluster`` of N worker processes,
``tcp://HOST:8786`` joins a running one) the names are split into parts; each worker opens the
source itself (a path it can see, or a URL, read by ranges) and summarizes its part with the
very same function, so the numbers are bit-identical to the local path. Results are merged on
the client. Dask is imported only when a scheduler is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from paramscope.core.errors import SourceError
from paramscope.core.model import kernels
from paramscope.core.model.float_scan import prefer_compiled
from paramscope.core.model.model_statistics import TensorSummary, summarize
from paramscope.core.runs.series import _values, open_checkpoint
from paramscope.core.tasks import TaskState, ensure_state

#: Parts per worker: small enough to balance, large enough that opening headers is negligible.
PARTS_PER_WORKER = 4


def summarize_part(source: str, bins: int | None, trust: bool, names: list[str]) -> dict[str, TensorSummary]:
    """What one worker does: open ``source`` (headers only where lazy) and summarize ``names``."""
    checkpoint = open_checkpoint(source, trust)
    out = {}
    for name in names:
        tensor = _values(checkpoint, name)
        if tensor is None:
            raise SourceError(f"{source}: holds no tensor {name!r} (changed since the audit began?)")
        out[name] = summarize(tensor, bins)
    return out


def _in_worker(threads: int, compiled: bool, function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``function(*args)`` with the client's torch threads and choice of compiled loops: torch sums
    in another order with another number of threads, the compiled loops round differently, so
    the worker's last bits are the local path's."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with kernels.policy(compiled):
        return function(*args)


def job_compiled(sizes: dict[str, int]) -> bool:
    """Whether a job over tensors of ``sizes`` bytes uses the compiled loops (decided once)."""
    return prefer_compiled(sum(sizes.values()) // 4)  # as if all float32


def _sizes(source: str, trust: bool) -> dict[str, int]:
    checkpoint = open_checkpoint(source, trust)
    return {n: max(1, t.numel() * t.element_size()) for n, t in checkpoint.tensors.items()}


def split_parts(sizes: dict[str, int], parts: int) -> list[list[str]]:
    """Names in ``parts`` groups of about equal bytes, largest first (greedy)."""
    groups: list[tuple[int, list[str]]] = [(0, []) for _ in range(max(1, min(parts, len(sizes))))]
    for name in sorted(sizes, key=lambda n: -sizes[n]):
        total, members = min(groups, key=lambda g: g[0])
        groups.remove((total, members))
        members.append(name)
        groups.append((total + sizes[name], members))
    return [members for _, members in groups if members]


def audit(
    source: str,
    scheduler: str | None = None,
    bins: int | None = None,
    trust: bool = False,
    state: TaskState | None = None,
) -> dict[str, TensorSummary]:
    """Summaries of every stored tensor of ``source``, in name order (see the module docstring)."""
    state = ensure_state(state)
    sizes = _sizes(source, trust)
    if scheduler is None:
        with kernels.policy(job_compiled(sizes)):
            results = _audit_here(source, sizes, bins, trust, state)
    else:
        results = map_on_dask(scheduler, summarize_part, (source, bins, trust), sizes, state)
    state.progress(1.0, "done")
    return {name: results[name] for name in sizes}


def _audit_here(source: str, sizes: dict[str, int], bins: int | None, trust: bool, state: TaskState) -> dict[str, TensorSummary]:
    total, done = sum(sizes.values()), 0
    checkpoint = open_checkpoint(source, trust)
    results = {}
    for name in sizes:
        state.progress(done / total, name)
        results[name] = summarize(_values(checkpoint, name), bins, state)
        done += sizes[name]
    return results


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A distributed client: ``local:N`` (a LocalCluster of N processes) or a scheduler address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SourceError("--scheduler needs Dask: pip install 'paramscope[cluster]'") from None
    if scheduler.startswith("local:"):
        try:
            workers = int(scheduler.removeprefix("local:"))
        except ValueError:
            raise SourceError(f"--scheduler {scheduler}: give local:N with N a number of workers") from None
        with _local_cluster(LocalCluster, workers) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise SourceError(f"--scheduler {scheduler}: cannot reach the scheduler ({exc})") from None
    with client:
        yield client


def _local_cluster(factory: Callable[..., Any], workers: int) -> Any:
    """A LocalCluster whose worker processes ignore SIGINT: Ctrl+C in a terminal reaches the
    whole process group, and workers would each print a traceback; the client stops them.

    An ignored signal stays ignored across the workers' exec, and neither Python nor asyncio
    installs a handler over it. So SIGINT is ignored while they start (a Ctrl+C in those seconds
    is lost) and restored at once.
    """
    import logging
    import signal
    import threading

    here = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if here else None
    try:
        return factory(
            n_workers=max(1, workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,  # a cancel's warnings are not the user's business
        )
    finally:
        if here:
            signal.signal(signal.SIGINT, previous)


def map_on_dask(
    scheduler: str,
    function: Callable[..., dict[str, Any]],
    args: tuple[Any, ...],
    sizes: dict[str, int],
    state: TaskState,
) -> dict[str, Any]:
    """``function(*args, names)`` on the cluster for parts of ``sizes``' names
    (about equal bytes each), merged. Progress as parts finish; a cancel (``state`` or Ctrl+C)
    cancels what is still queued or running and raises."""
    import torch
    from distributed import TimeoutError as DaskTimeout
    from distributed import wait

    threads, compiled = torch.get_num_threads(), job_compiled(sizes)
    with dask_client(scheduler) as client:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        parts = split_parts(sizes, workers * PARTS_PER_WORKER)
        futures = {
            client.submit(_in_worker, threads, compiled, function, *args, part, pure=False): part for part in parts
        }
        total, done, parts_done = sum(sizes.values()), 0, 0
        results: dict[str, Any] = {}
        pending = set(futures)
        state.progress(0.0, f"{len(parts)} parts on {workers} worker(s)")
        try:
            while pending:
                state.check()
                try:
                    finished, pending = wait(pending, timeout=0.2, return_when="FIRST_COMPLETED")
                except DaskTimeout:
                    continue
                for future in finished:
                    results.update(future.result())
                    done, parts_done = done + sum(sizes[n] for n in futures[future]), parts_done + 1
                    state.progress(done / total, f"{parts_done} of {len(parts)} parts done")
        except BaseException:  # Cancelled, Ctrl+C, a worker's error: nothing left running
            with suppress(Exception):  # a lost scheduler must not hide why we stopped
                client.cancel(list(futures))
            raise
    return results
