"""Audits: every tensor's statistics and histogram, here or on a Dask distributed cluster.

``audit(source, scheduler=None)`` summarizes each tensor with :func:`summarize`, one tensor at a
time. With a scheduler (``local:N`` starts a ``LocalCluster`` of N worker processes,
``tcp://HOST:8786`` joins a running one) the names are split into parts; each worker opens the
source itself (a path it can see, or a URL, read by ranges) and summarizes its part with the
very same function, so the numbers are bit-identical to the local path. Results are merged on
the client. Dask is imported only when a scheduler is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from paramscope.core.errors import Cancelled, SourceError
from paramscope.core.model_statistics import TensorSummary, summarize
from paramscope.core.series import _values, open_checkpoint
from paramscope.core.tasks import TaskState, ensure_state

#: Parts per worker: small enough to balance, large enough that opening headers is negligible.
PARTS_PER_WORKER = 4


def summarize_part(
    source: str, names: list[str], bins: int | None, trust: bool, threads: int
) -> dict[str, TensorSummary]:
    """What one worker does: open ``source`` (headers only where lazy) and summarize ``names``.

    torch sums in another order with another number of threads: the worker uses the client's
    ``threads``, so its last bits are the local path's.
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    checkpoint = open_checkpoint(source, trust)
    out = {}
    for name in names:
        tensor = _values(checkpoint, name)
        if tensor is None:
            raise SourceError(f"{source}: holds no tensor {name!r} (changed since the audit began?)")
        out[name] = summarize(tensor, bins)
    return out


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
        results = _audit_here(source, sizes, bins, trust, state)
    else:
        results = _audit_on_dask(source, sizes, scheduler, bins, trust, state)
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
        with (
            LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise SourceError(f"--scheduler {scheduler}: cannot reach the scheduler ({exc})") from None
    with client:
        yield client


def _audit_on_dask(
    source: str, sizes: dict[str, int], scheduler: str, bins: int | None, trust: bool, state: TaskState
) -> dict[str, TensorSummary]:
    import torch
    from distributed import as_completed

    threads = torch.get_num_threads()
    with dask_client(scheduler) as client:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        parts = split_parts(sizes, workers * PARTS_PER_WORKER)
        futures = {client.submit(summarize_part, source, part, bins, trust, threads, pure=False): part for part in parts}
        total, done = sum(sizes.values()), 0
        results: dict[str, TensorSummary] = {}
        try:
            for future in as_completed(futures):
                part = futures[future]
                results.update(future.result())
                done += sum(sizes[n] for n in part)
                state.progress(done / total, part[-1])
        except (Cancelled, KeyboardInterrupt):
            client.cancel(list(futures))
            raise
    return results
