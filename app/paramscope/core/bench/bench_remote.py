"""``paramscope bench`` rows for checkpoints by URL and audits on Dask (issue 18).

remote_open: a Llama-405B-shaped sharded checkpoint (191 shards, 811 GB of bf16 as sparse files,
so no disk is used) behind a range server on 127.0.0.1 that adds 20 ms to every request, opened
to a full tree (the module tree and the report the window and ``inspect`` show): target < 2 s.
Baseline: the same ranged GETs made bare, as many at once, nothing parsed (the floor of any
opener at this latency).

remote_tensor: one tensor read by its range against a download of its whole shard (read and
discarded, a lower bound for any download): target, twice the tensor's share of the shard's
bytes. A layer norm's read is reported too (its time is the round trip, not the bytes).

audit_cluster: ``audit`` of a multi-GB checkpoint on a LocalCluster of two worker processes,
reached by its address (the code path of ``--scheduler tcp://HOST:8786``), against the
single-process audit; every number is compared bit for bit. Informative: on two cores the point
is correctness and overlapping reads with computing, not a speed-up.

Each step runs in its own process: ``python -m paramscope.core.bench.bench_remote STEP [--quick]``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from paramscope.core.bench.bench_files import _memory_folder
from paramscope.core.bench.bench_rows import Row, _finish, compare, peak_rss_mb
from paramscope.core.bench.bench_server import ServerProcess
from paramscope.core.files.safety import human_bytes

STEPS = ("remote_open", "remote_tensor", "audit_cluster")
LATENCY_MS = 20.0


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    shards: int


#: Llama 3.1 405B's config.json, and the 191 shards of its Hugging Face repository.
LLAMA_405B = LlamaShape(16384, 53248, 126, 128, 8, 128256, 191)
LLAMA_QUICK = LlamaShape(256, 688, 4, 8, 2, 1024, 8)


def llama_tensors(shape: LlamaShape) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes in the order Hugging Face writes them."""
    kv = shape.hidden // shape.heads * shape.kv_heads
    h, i = shape.hidden, shape.intermediate
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (shape.vocab, h))]
    for n in range(shape.layers):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
        ]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (shape.vocab, h))]


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


def _write_safetensors_header(path: Path, entries: list[tuple[str, tuple[int, ...]]], dtype: str, itemsize: int) -> int:
    """A safetensors file of ``entries`` whose data is left a hole (zeros, no disk): its size."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in entries:
        nbytes = _numel(shape) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def write_sparse_llama(folder: Path, shape: LlamaShape) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """``model.safetensors.index.json`` and ``shape.shards`` bf16 shards of about equal bytes."""
    tensors = llama_tensors(shape)
    total = sum(_numel(s) * 2 for _, s in tensors)
    shards: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    filled = 0
    for name, dims in tensors:
        number = min(shape.shards, 1 + filled * shape.shards // total)
        shards.setdefault(f"model-{number:05d}-of-{shape.shards:05d}.safetensors", []).append((name, dims))
        filled += _numel(dims) * 2
    weight_map = {}
    for file, entries in shards.items():
        _write_safetensors_header(folder / file, entries, "BF16", 2)
        weight_map.update({name: file for name, _ in entries})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return shards


@contextmanager
def served_llama(quick: bool) -> Iterator[tuple[str, LlamaShape, dict[str, list[tuple[str, tuple[int, ...]]]]]]:
    """The sparse checkpoint behind the bench's range server: (base URL, shape, shards)."""
    shape = LLAMA_QUICK if quick else LLAMA_405B
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-remote-") as tmp:
        shards = write_sparse_llama(Path(tmp), shape)
        with ServerProcess(Path(tmp), LATENCY_MS) as base:
            yield base, shape, shards


def _get(url: str, byte_range: str | None = None, buffer: memoryview | bytearray | None = None, fill: bool = False) -> int:
    """One GET read to its end into ``buffer``: the bytes received. ``fill``: one after the
    other (the buffer holds the body); else each piece over the last (read and discarded)."""
    headers = {"Range": byte_range} if byte_range else {}
    got = 0
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:  # noqa: S310
        view = memoryview(buffer if buffer is not None else bytearray(1 << 20))
        while count := resp.readinto(view[got:] if fill else view):
            got += count
    return got


def step_remote_open(quick: bool, repeats: int) -> list[Row]:
    from paramscope.core.files.remote import HEADER_PROBE, PARALLEL_READS
    from paramscope.core.model.report import build_report
    from paramscope.core.sources.sources import open_source

    with served_llama(quick) as (base, shape, shards):
        url = f"{base}/model.safetensors.index.json"

        def app() -> None:
            build_report(open_source(url).model)

        def bare() -> None:
            _get(url)
            with ThreadPoolExecutor(PARALLEL_READS) as pool:
                list(pool.map(lambda f: _get(f"{base}/{f}", f"bytes=0-{HEADER_PROBE - 1}"), shards))

        timed = compare(app, bare, repeats)
    total = sum(_numel(s) * 2 for entries in shards.values() for _, s in entries)
    count = sum(len(entries) for entries in shards.values())
    name = "Llama-405B-shaped" if shape == LLAMA_405B else "small Llama-shaped"
    row = Row(
        "remote_open",
        f"open a remote {name} checkpoint ({len(shards)} shards) to a full tree vs its bare header GETs",
        "< 2 s",
        limit_s=2.0,
        note=f"{count} tensors, {human_bytes(total)} of bf16 in sparse files behind a range server on "
        f"127.0.0.1 adding {LATENCY_MS:.0f} ms per request; app: open + report; baseline: the same "
        f"{len(shards) + 1} GETs, {PARALLEL_READS} at a time, nothing parsed",
    )
    return [_finish(row, *timed)]


#: The targeted read's bytes land in a new tensor and in the range cache: three passes over
#: memory per byte against the download's one (into a reused buffer, a lower bound).
PASSES = 3


def _pick(shards: dict[str, list[tuple[str, tuple[int, ...]]]], layer: int) -> dict[str, tuple[str, int, int]]:
    """A middle layer's o_proj and the smallest tensor of its shard: (shard, bytes, shard bytes)."""
    wanted = f"model.layers.{layer}.self_attn.o_proj.weight"
    file, entries = next((f, e) for f, e in shards.items() if any(n == wanted for n, _ in e))
    sizes = {name: _numel(dims) * 2 for name, dims in entries}
    smallest = min(sizes, key=lambda n: sizes[n])
    return {name: (file, sizes[name], sum(sizes.values())) for name in (wanted, smallest)}


def _tensor_rows(quick: bool, repeats: int, cache_dir: Path) -> list[Row]:
    from paramscope.core.sources.sources import open_source

    with served_llama(quick) as (base, shape, shards):
        wanted = _pick(shards, shape.layers // 2)
        file = next(iter(wanted.values()))[0]
        loader = open_source(f"{base}/model.safetensors.index.json").loader
        assert loader is not None
        buffer = bytearray(8 << 20)
        best = dict.fromkeys(wanted, float("inf"))
        download = floor = float("inf")
        for _ in range(repeats):
            for name in wanted:
                _clear(cache_dir)  # a first look: fetched over the network, not from the cache
                start = time.perf_counter()
                loader(name)
                best[name] = min(best[name], time.perf_counter() - start)
            start = time.perf_counter()
            _get(f"{base}/{file}", buffer=buffer)
            download = min(download, time.perf_counter() - start)
            start = time.perf_counter()
            _bare_ranges(f"{base}/{file}", next(iter(wanted.values()))[1])
            floor = min(floor, time.perf_counter() - start)
    rows = []
    for number, (name, (_, nbytes, shard_bytes)) in enumerate(wanted.items()):
        share = nbytes / shard_bytes
        targeted = number == 0
        row = Row(
            "remote_tensor",
            f"read {name} ({human_bytes(nbytes)}) by its range vs download its shard ({human_bytes(shard_bytes)})",
            f"<= {PASSES * share:.3g}x" if targeted else "informative",
            PASSES * share if targeted else None,
            note=f"{share:.2%} of the shard's bytes; "
            + (
                f"target: {PASSES}x that share (proportional to the tensor: its bytes land in a new "
                "tensor and in the range cache, the download's in a reused buffer); "
                if targeted
                else "one round trip: its time is the latency, not the bytes; "
            )
            + f"{LATENCY_MS:.0f} ms per request; the range cache cleared before each read; the "
            "download is read and discarded (written nowhere: a lower bound)"
            + (f"; the same ranges fetched bare into new memory: {floor:.3f} s" if targeted else ""),
        )
        rows.append(_finish(row, best[name], download))
    return rows


def _bare_ranges(url: str, nbytes: int) -> None:
    """``nbytes`` into new memory by the app's pieces, as many at once: any range reader's floor."""
    from paramscope.core.files.remote import CHUNK_BYTES, PARALLEL_CHUNKS

    target = memoryview(bytearray(nbytes))
    starts = range(0, nbytes, CHUNK_BYTES)
    with ThreadPoolExecutor(PARALLEL_CHUNKS) as pool:
        list(pool.map(lambda a: _get(url, f"bytes={a}-{min(nbytes, a + CHUNK_BYTES) - 1}", target[a : a + CHUNK_BYTES], True), starts))


def _clear(folder: Path) -> None:
    for path in folder.glob("*"):
        path.unlink()


def step_remote_tensor(quick: bool, repeats: int) -> list[Row]:
    # the range cache, as a user has it, but in a RAM folder where there is one: a cloud disk's
    # own moods would decide the row otherwise
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-cache-", dir=_memory_folder(4 << 30)) as cache:
        saved = {k: os.environ.get(k) for k in ("PARAMSCOPE_CACHE_DIR", "PARAMSCOPE_CACHE_BYTES")}
        os.environ.update(PARAMSCOPE_CACHE_DIR=cache, PARAMSCOPE_CACHE_BYTES=str(4 << 30))
        try:
            return _tensor_rows(quick, repeats, Path(cache))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# ---------------------------------------------------------------------------------- audit


def write_random_safetensors(path: Path, tensors: int, rows: int, cols: int) -> int:
    """``tensors`` float32 matrices of N(0, 0.02) and a bias each, written one at a time."""
    entries = []
    for n in range(tensors):
        entries += [(f"layers.{n}.weight", (rows, cols)), (f"layers.{n}.bias", (rows,))]
    size = _write_safetensors_header(path, entries, "F32", 4)
    header_end = size - sum(_numel(s) * 4 for _, s in entries)
    generator = torch.Generator().manual_seed(0)
    with open(path, "r+b") as handle:
        handle.seek(header_end)
        for _, dims in entries:
            handle.write(torch.randn(dims, generator=generator).mul_(0.02).numpy().tobytes())
    return size


def step_audit_cluster(quick: bool, repeats: int) -> list[Row]:
    from distributed import LocalCluster

    from paramscope.core.runs.audit import audit

    tensors, rows, cols = (8, 256, 256) if quick else (32, 4096, 4096)
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-audit-") as tmp:
        path = Path(tmp) / "checkpoint.safetensors"
        size = write_random_safetensors(path, tensors, rows, cols)
        start = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            started = time.perf_counter() - start
            results: dict[str, str] = {}

            def run(scheduler: str | None) -> Callable[[], None]:
                def go() -> None:
                    summaries = audit(str(path), scheduler)
                    text = json.dumps({n: (s.stats.to_dict(), s.histogram.to_dict()) for n, s in summaries.items()})
                    results[str(scheduler is None)] = text

                return go

            timed = compare(run(cluster.scheduler_address), run(None), repeats)
    row = Row(
        "audit_cluster",
        f"audit of a {human_bytes(size)} checkpoint on local:2 (2 worker processes) vs one process",
        "informative",
        note=f"{2 * tensors} tensors, every statistic and bar bit-identical to one process's; "
        f"{os.cpu_count()} CPU(s) here: the point is correctness and overlapping reads with computing; "
        f"the cluster's start ({started:.1f} s) is not in the app's time",
    )
    if results["True"] != results["False"]:
        row.pending = "failed: the cluster's numbers differ from one process's"
    return [_finish(row, *timed)]


STEP_FUNCTIONS: dict[str, Callable[[bool, int], list[Row]]] = {
    "remote_open": step_remote_open,
    "remote_tensor": step_remote_tensor,
    "audit_cluster": step_audit_cluster,
}


def run_step(step: str, quick: bool) -> list[Row]:
    """One step in this process; a crash is a ``failed`` row, which the bench tests refuse."""
    torch.set_num_threads(1)
    try:
        rows = STEP_FUNCTIONS[step](quick, 2 if quick else 3)
    except Exception as exc:
        rows = [Row(step, step, "-", pending=f"failed: {type(exc).__name__}: {exc}")]
    peak = peak_rss_mb()
    for row in rows:
        row.peak_rss_mb = peak
    return rows


if __name__ == "__main__":  # python -m paramscope.core.bench.bench_remote STEP [--quick]
    for result in run_step(sys.argv[1], quick="--quick" in sys.argv[2:]):
        print(json.dumps(result.to_dict()), flush=True)
