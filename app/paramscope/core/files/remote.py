"""Checkpoints by URL, read by ranges: ``https://.../model.safetensors``, a sharded
``...safetensors.index.json`` and ``s3://bucket/prefix/``.

Opening reads the headers alone (one small ranged read per shard, shards in parallel) and gives
shape-only placeholders; a tensor's values are read, from its own byte range only, when it is
looked at (:class:`RemoteLoader`, the opened model's ``loader``). Only safetensors and its index
are opened remotely: their headers say where every tensor lies, and reading them runs no code.
Other formats are refused with a hint to download them first.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote, urlsplit

import torch

from paramscope.core.errors import SourceError
from paramscope.core.files.module_tree import NO_FORWARD, build_module
from paramscope.core.files.opened import OpenedModel
from paramscope.core.files.regions import Region
from paramscope.core.files.remote_cache import RangeCache
from paramscope.core.files.remote_io import (
    RangeReader,
    RemoteStamp,
    reader_for,
    s3_filesystem,
    shown_url,
)
from paramscope.core.files.safetensors_io import (
    _TORCH_DTYPES,
    aliases_from_metadata,
    check_header,
    header_length,
    natural_key,
)
from paramscope.core.files.safety import check_fits_memory, human_bytes
from paramscope.core.files.sharded import names_by_shard, parse_index
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.model.dequantize import quantized_note
from paramscope.core.tasks import TaskState, advance, part

#: The first read of a file: the whole header of most safetensors files (a Llama shard's is
#: ~20 KB), or a whole index; tensors that lie inside it are served from it.
HEADER_PROBE = 64 * 1024
#: Largest index read (a 405B model's index is ~100 KB).
INDEX_LIMIT = 64 << 20
#: A tensor is fetched (and cached) in pieces of this size, so a retry resumes after the last one.
CHUNK_BYTES = 16 << 20
#: Pieces of one tensor fetched at once (bench remote_tensor, 20 ms a request: 512 MiB in 0.7 s,
#: 0.8 s with 4, 2.8 s one at a time).
PARALLEL_CHUNKS = 8
#: Shard headers read at once when opening an index.
PARALLEL_READS = 16
_KNOWN = (
    "model.safetensors.index.json",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
    "adapter_model.safetensors",
)


def download_first(url: str, what: str) -> SourceError:
    return SourceError(
        f"{url}: {what}; paramscope reads only safetensors files and their *.index.json over the "
        "network (their headers say where each tensor lies, and reading them runs no code): "
        "download it first and open the local copy"
    )


@dataclass
class RemoteFile:
    """One version of a remote file: reads check it (:class:`RemoteStamp`) and use the cache."""

    url: str  # the full URL (with credentials, if any: never shown)
    reader: RangeReader
    stamp: RemoteStamp
    cache: RangeCache
    head: bytes = b""  # the file's first bytes, from the first read

    @property
    def shown(self) -> str:
        return self.reader.url

    def read_into(self, target: memoryview, start: int) -> None:
        """Fill ``target`` with the bytes from ``start``, cached or fetched a piece at a time,
        :data:`PARALLEL_CHUNKS` pieces at once (a request's round trip hides behind the others)."""
        if start + len(target) <= len(self.head):  # read with the header already
            target[:] = self.head[start : start + len(target)]
            return
        pieces = [(begin, min(len(target), begin + CHUNK_BYTES)) for begin in range(0, len(target), CHUNK_BYTES)]
        if len(pieces) == 1:
            self._piece(target, start)
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_CHUNKS, len(pieces))) as pool:
            list(pool.map(lambda piece: self._piece(target[piece[0] : piece[1]], start + piece[0]), pieces))

    def _piece(self, target: memoryview, start: int) -> None:
        if not self.stamp.cacheable:
            self.reader.read_into(self.stamp, start, target)
            return
        key = self.cache.key(self.url, self.stamp, start, start + len(target))
        if not self.cache.get_into(key, target):
            self.reader.read_into(self.stamp, start, target)
            self.cache.put(key, target)


class RemoteLoader:
    """Loads one tensor of a remote safetensors file by name, reading only its byte range."""

    def __init__(self, file: RemoteFile, regions: dict[str, Region]) -> None:
        self.file = file
        self.regions = regions

    def __call__(self, name: str) -> torch.Tensor:
        region = self.regions.get(name)
        if region is None:
            raise SourceError(f"{self.file.shown}: holds no tensor {name!r}")
        tensor = torch.empty(region.shape, dtype=region.dtype)
        if region.nbytes:
            self.file.read_into(memoryview(tensor.view(-1).view(torch.uint8).numpy()), region.offset)
        return tensor


@dataclass
class _Shard:
    """A remote safetensors file opened from its header."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    loader: RemoteLoader
    nbytes: int


def read_remote_checkpoint(url: str, cache: RangeCache | None = None) -> Checkpoint:
    """Placeholders for every tensor of the safetensors file or index at ``url``, and a loader.

    Raises:
        SourceError: one line naming the URL (never its credentials) and the problem.
    """
    return _read_remote(url, cache)[0]


def read_remote_tensors(url: str, cache: RangeCache | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of ``url`` read into memory, aliases included (what ``diff`` compares)."""
    from paramscope.core.files.readers import reading

    with reading(shown_url(url)):
        checkpoint, _ = _read_remote(url, cache)
        check_fits_memory(shown_url(url), sum(t.numel() * t.element_size() for t in checkpoint.tensors.values()))
        assert checkpoint.loader is not None
        checkpoint.tensors = {name: checkpoint.loader(name) for name in checkpoint.tensors}
        return checkpoint.all_tensors()


def open_remote(url: str, cache: RangeCache | None = None, state: TaskState | None = None) -> OpenedModel:
    """The model for ``url``: placeholders built into a module tree, with a loader. ``state``:
    progress (shard headers as they arrive, then the module tree) and cancel."""
    from paramscope.core.files.readers import READ_SHARE, reading

    with reading(shown_url(url)):
        checkpoint, kind = _read_remote(url, cache, part(state, 0.0, READ_SHARE))
        model, build_notes = build_module(checkpoint, kind, part(state, READ_SHARE, 1.0))
        build_notes += [note] if (note := quantized_note(checkpoint.tensors)) else []
    return OpenedModel(
        model,
        shown_url(url),
        kind,
        forward_unavailable=NO_FORWARD,
        notes=checkpoint.notes + build_notes,
        extras=dict(checkpoint.extras),
        loader=checkpoint.loader,
    )


def _read_remote(url: str, cache: RangeCache | None, state: TaskState | None = None) -> tuple[Checkpoint, str]:
    cache = cache if cache is not None else RangeCache.from_env()
    if url.endswith("/"):
        url = _weights_in_remote_folder(url)
    reader = reader_for(url)
    stamp, probe = reader.first(HEADER_PROBE)
    if probe.lstrip()[:1] == b"{":
        return _read_index(url, reader, stamp, probe, cache, state), "sharded"
    if len(probe) >= 9 and probe[8:9] == b"{":
        shard = _open_safetensors(url, reader, stamp, probe, cache)
        return _checkpoint(shard.tensors, shard.metadata, shard.loader, [], shard.nbytes, url), "state_dict"
    raise download_first(reader.url, "is not a safetensors file or index")


def _open_safetensors(url: str, reader: RangeReader, stamp: RemoteStamp, probe: bytes, cache: RangeCache) -> _Shard:
    shown = reader.url
    header_len = header_length(shown, probe[:8], stamp.size)
    raw = probe[8 : 8 + header_len]
    if len(raw) < header_len:  # a header larger than the first read: one more range
        raw += reader.read(stamp, len(probe), 8 + header_len)
    header, metadata, data_start = check_header(shown, raw, stamp.size)
    odd = sorted({e["dtype"] for e in header.values() if e["dtype"] not in _TORCH_DTYPES})
    if odd:
        raise download_first(shown, f"holds {', '.join(odd)} tensors, which torch cannot hold")
    regions = {
        name: Region(data_start + e["data_offsets"][0], tuple(e["shape"]), _TORCH_DTYPES[e["dtype"]])
        for name, e in header.items()
    }
    tensors = {n: torch.empty(r.shape, dtype=r.dtype, device="meta") for n, r in regions.items()}
    nbytes = stamp.size - data_start
    return _Shard(tensors, metadata, RemoteLoader(RemoteFile(url, reader, stamp, cache, probe), regions), nbytes)


def _read_index(
    url: str, reader: RangeReader, stamp: RemoteStamp, probe: bytes, cache: RangeCache, state: TaskState | None = None
) -> Checkpoint:
    shown = reader.url
    if stamp.size > INDEX_LIMIT:
        raise SourceError(f"{shown}: a {human_bytes(stamp.size)} JSON file is too large for an index")
    raw = probe if len(probe) >= stamp.size else probe + reader.read(stamp, len(probe), stamp.size)
    weight_map, metadata = parse_index(shown, raw)
    names = list(dict.fromkeys(weight_map.values()))
    urls = {name: shard_url(url, name, shown) for name in names}
    shards = _open_shards(urls, cache, state)
    tensors: dict[str, torch.Tensor] = {}
    loaders: dict[str, RemoteLoader] = {}
    aliases: dict[str, str] = {}
    wanted = names_by_shard(weight_map)
    for name, shard in shards.items():
        for key in wanted[name]:
            if key not in shard.tensors:
                raise SourceError(f"{shard.loader.file.shown}: does not hold tensor {key!r}, which {shown} says it does")
            tensors[key] = shard.tensors[key]
            loaders[key] = shard.loader
        found = aliases_from_metadata(shard.metadata, set(shard.tensors))
        aliases.update({a: t for a, t in found.items() if a not in weight_map})
    notes = [f"{len(shards)} shard(s) read through {PurePosixPath(urlsplit(url).path).name}"]
    total = sum(s.nbytes for s in shards.values())
    extras = {"index metadata": dict(metadata)} if metadata else {}
    checkpoint = _checkpoint(tensors, {}, _by_name(loaders, aliases), notes, total, url)
    checkpoint.aliases.update(aliases)
    checkpoint.extras.update(extras)
    return checkpoint


def _open_shards(urls: dict[str, str], cache: RangeCache, state: TaskState | None) -> dict[str, _Shard]:
    """Each shard's header, read :data:`PARALLEL_READS` at a time; progress as they arrive. A
    failure is raised for the first shard in the index's order that failed, as it names it."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_READS, len(urls))))
    try:
        futures = {name: pool.submit(_open_shard, url, cache) for name, url in urls.items()}
        for done, _future in enumerate(as_completed(futures.values()), 1):
            # (a stop raises here: the reads not started are dropped)
            advance(state, done / len(urls), f"read {done} of {len(urls)} shard headers")
        return {name: future.result() for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _open_shard(url: str, cache: RangeCache) -> _Shard:
    reader = reader_for(url)
    stamp, probe = reader.first(HEADER_PROBE)
    if not (len(probe) >= 9 and probe[8:9] == b"{"):
        raise download_first(reader.url, "is not a safetensors shard")
    return _open_safetensors(url, reader, stamp, probe, cache)


def shard_url(index_url: str, name: str, shown: str) -> str:
    """The URL of shard ``name`` beside the index; names that leave its folder are refused."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or ".." in path.parts
        or any(c in name for c in ("\\", "?", "#", "\0"))
        or "://" in name
    ):
        raise SourceError(f"{shown}: names shard {name!r}, which is not a file beside the index")
    parts = urlsplit(index_url)
    folder = parts.path.rpartition("/")[0]
    tail = name if parts.scheme.lower() == "s3" else quote(name)
    return f"{parts.scheme}://{parts.netloc}{folder}/{tail}"


def _by_name(loaders: dict[str, RemoteLoader], aliases: dict[str, str]) -> Callable[[str], torch.Tensor]:
    def load(name: str) -> torch.Tensor:
        name = aliases.get(name, name)
        return loaders[name](name)

    return load


def _checkpoint(
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    loader: Callable[[str], torch.Tensor],
    notes: list[str],
    nbytes: int,
    url: str,
) -> Checkpoint:
    tensors = {k: tensors[k] for k in sorted(tensors, key=natural_key)}
    aliases = aliases_from_metadata(metadata, set(tensors))
    other = {k: v for k, v in metadata.items() if k not in aliases}
    notes = list(notes)
    notes.append(
        f"{human_bytes(nbytes)} of tensors at {urlsplit(shown_url(url)).netloc}: each is read over "
        "the network when it is looked at"
    )
    return Checkpoint(tensors, aliases=aliases, extras=dict(other), notes=notes, distinct=True, loader=loader)


def _weights_in_remote_folder(url: str) -> str:
    """The file to open in ``s3://bucket/prefix/``: a known name, the only index, or the only
    safetensors file (as for a local folder)."""
    shown = shown_url(url)
    if urlsplit(url).scheme.lower() != "s3":
        raise SourceError(f"{shown}: a web folder cannot be listed; give the URL of the .safetensors file or its index")
    fs = s3_filesystem()
    try:
        names = [PurePosixPath(p).name for p in fs.ls(url, detail=False, refresh=True)]
    except FileNotFoundError:
        raise SourceError(f"{shown}: not found") from None
    except PermissionError:
        raise SourceError(f"{shown}: access denied; credentials come from the environment or ~/.aws") from None
    except OSError as exc:
        raise SourceError(f"{shown}: cannot be listed ({exc}); retry") from None
    chosen = next((n for n in _KNOWN if n in names), None)
    if chosen is None:
        for suffix in (".safetensors.index.json", ".safetensors"):
            found = sorted(n for n in names if n.endswith(suffix))
            if len(found) > 1:
                raise SourceError(f"{shown}: holds several {suffix} files ({', '.join(found[:4])}); open one of them")
            if found:
                chosen = found[0]
                break
    if chosen is None:
        if names:
            raise download_first(shown, "holds no safetensors file or index")
        raise SourceError(f"{shown}: is empty or not found")
    return url + chosen
