"""Sharded checkpoints: a ``*.index.json`` whose ``weight_map`` names the shard of every tensor.

Each shard is read like any single file (safetensors or a torch state_dict, never unpickling code
without trust); shard names that leave the index's folder are refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from paramscope.core import tasks
from paramscope.core.errors import NotInFiles
from paramscope.core.files.regions import opens_lazily
from paramscope.core.files.safety import (
    bad_file,
    check_inside,
    check_readable_file,
)
from paramscope.core.files.sniff import sniff
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.tasks import TaskState


def read_index(path: Path) -> tuple[dict[str, str], dict[str, object]]:
    """The weight map and the index's metadata, validated."""
    check_readable_file(path)
    return parse_index(path, path.read_bytes())


def parse_index(path: Path | str, raw: bytes) -> tuple[dict[str, str], dict[str, object]]:
    """:func:`read_index`'s checks on the index's bytes, from any reader (``path`` names it)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, nesting too deep, absurd numbers
        raise bad_file(path, f"is not a valid JSON index ({exc.__class__.__name__})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise bad_file(path, "has no valid weight_map (tensor name -> shard file)")
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    return weight_map, dict(metadata)


def read_sharded(
    path: Path, trust: bool = False, lazy: bool | None = False, state: TaskState | None = None
) -> Checkpoint:
    """Load every shard named by the index at ``path``.

    ``lazy`` as for one file (None: decided by the shards' total size), so a model split into
    many small shards is not read whole into memory. ``state``: progress and cancel, shard by
    shard (DeepSeek-V3 has 163).

    Raises:
        SourceError: missing shard, a shard name outside the folder, a tensor missing from its
            shard, or a damaged shard (naming the shard).
        UntrustedFileError: a shard that needs unpickling code, unless ``trust``.
    """
    from paramscope.core.files.readers import read_checkpoint

    weight_map, metadata = read_index(path)
    folder = path.parent
    shards: dict[str, Path] = {}
    for shard in dict.fromkeys(weight_map.values()):
        resolved = check_inside(folder, shard, path)
        try:
            present = resolved.is_file()
        except OSError:  # e.g. a name longer than the file system allows
            present = False
        if not present:
            what = "is not a regular file" if os.path.lexists(resolved) else f"does not exist in {folder}"
            raise bad_file(path, f"names shard {shard!r}, which {what}")
        if sniff(resolved).kind == "index":  # itself, or another index: reading would recurse
            which = "itself" if resolved.resolve() == path.resolve() else f"another index, {shard!r},"
            raise bad_file(path, f"names {which} as a shard; shards hold tensors")
        shards[shard] = resolved
    lazy = opens_lazily(lazy, sum(p.stat().st_size for p in shards.values()))
    # each shard checks what it must hold in memory itself (lazy ones need none)
    loaders: dict[str, Callable[[str], torch.Tensor]] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    notes = [f"{len(shards)} shard(s) read through {path.name}"]
    wanted = names_by_shard(weight_map)
    for number, (shard, shard_path) in enumerate(shards.items()):
        share = tasks.part(state, number / len(shards), (number + 1) / len(shards))
        tasks.advance(share, 0.0, f"reading {shard}")
        part = read_checkpoint(shard_path, trust=trust, lazy=lazy, state=share)
        if part.module is not None:
            raise bad_file(shard_path, "is a whole pickled module, not a state_dict shard")
        available = part.all_tensors()
        for key in wanted[shard]:
            if key not in available:
                raise bad_file(shard_path, f"does not hold tensor {key!r}, which {path.name} says it does")
            tensors[key] = available[key]
            if part.loader is not None:
                loaders[key] = part.loader
        aliases.update({a: t for a, t in part.aliases.items() if a not in weight_map})
        extra = [k for k in part.tensors if k not in weight_map]
        if extra:
            notes.append(f"{shard}: {len(extra)} tensor(s) not in the index were ignored")
    extras: dict[str, object] = {"index metadata": dict(metadata)} if metadata else {}
    loader = _by_name(loaders, aliases, path) if loaders else None
    return Checkpoint(tensors, aliases=aliases, extras=extras, notes=notes, loader=loader)


def names_by_shard(weight_map: dict[str, str]) -> dict[str, list[str]]:
    """Each shard's tensor names, in the index's order (one pass: DeepSeek-V3 has 163 shards)."""
    wanted: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        wanted.setdefault(shard, []).append(key)
    return wanted


def _by_name(
    loaders: dict[str, Callable[[str], torch.Tensor]], aliases: dict[str, str], index: Path
) -> Callable[[str], torch.Tensor]:
    """One loader for the whole index: each name goes to its own shard's loader."""

    def load(name: str) -> torch.Tensor:
        name = aliases.get(name, name)
        if name not in loaders:  # (a KeyError was "unexpected error" on every large Llama folder)
            raise NotInFiles(index, name)
        return loaders[name](name)

    return load
