"""Folders as people save them: which file in a ``save_pretrained`` folder holds the weights.

transformers writes ``model.safetensors`` (or shards and ``model.safetensors.index.json``, or the
older ``pytorch_model.bin``), diffusers ``diffusion_pytorch_model.safetensors``, PEFT
``adapter_model.safetensors``; a training script often leaves a folder with one ``.pt`` file.
Saved with ``variant="fp16"`` (as diffusers repositories ship half-precision weights), a name
holds the variant before its extension: ``model.fp16.safetensors``,
``model.safetensors.index.fp16.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from paramscope.core.files.safety import bad_file

# Best first: safetensors before pickles, a whole model before an adapter.
KNOWN_WEIGHTS = (
    "model.safetensors.index.json",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
    "diffusion_pytorch_model.bin",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_SHARD = re.compile(r"-\d+-of-\d+$")


def known_weights(name: str) -> str | None:
    """The :data:`KNOWN_WEIGHTS` name ``name`` is, itself or with a variant (None: neither).

    Example:
        >>> known_weights("model.fp16.safetensors"), known_weights("model.safetensors.index.bf16.json")
        ('model.safetensors', 'model.safetensors.index.json')
    """
    found = _known_and_variant(name)
    return None if found is None else found[0]


def _known_and_variant(name: str) -> tuple[str, str] | None:
    if name in KNOWN_WEIGHTS:
        return name, ""
    parts = name.split(".")  # transformers' _add_variant: the variant goes before the last part
    if len(parts) < 3 or not parts[-2] or _SHARD.search(parts[-2]):  # (a shard: model.fp16-00001-of-00002.safetensors)
        return None
    plain = ".".join(parts[:-2] + parts[-1:])
    return (plain, parts[-2]) if plain in KNOWN_WEIGHTS else None


def weights_in_folder(folder: Path) -> Path:
    """The file to open for ``folder``: a known name (without a variant first), its only index,
    or its only weights file.

    Raises:
        SourceError: nothing to open, or a choice only the user can make (named in the message).
    """
    snapshot = cached_snapshot(folder)
    if snapshot is not None:
        return weights_in_folder(snapshot)
    for name in KNOWN_WEIGHTS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    variants = sorted(
        (KNOWN_WEIGHTS.index(found[0]), found[1], p)
        for p in folder.iterdir()
        if (found := _known_and_variant(p.name)) is not None and p.is_file()
    )
    named = sorted({variant for _, variant, _ in variants})
    if len(named) > 1:
        shown = ", ".join(p.name for _, _, p in variants[:4])
        raise bad_file(folder, f"holds the weights in several variants ({', '.join(named)}: {shown}); open one of them")
    if variants:
        return variants[0][2]
    indexes = sorted(folder.glob("*.index.json"))
    if len(indexes) == 1:
        return indexes[0]
    if indexes:
        raise bad_file(folder, f"holds several indexes ({', '.join(p.name for p in indexes[:4])}); open one of them")
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if len(files) == 1:
        return files[0]
    if files:
        shown = ", ".join(p.name for p in files[:4]) + (" ..." if len(files) > 4 else "")
        raise bad_file(folder, f"holds several weights files ({shown}); open one of them")
    parts = _parts_with_weights(folder)
    if parts:
        what = "a diffusers pipeline (model_index.json)" if (folder / "model_index.json").is_file() else "a folder"
        run = f" (or all as a run: paramscope --series {folder})" if len(parts) > 1 and what == "a folder" else ""
        raise bad_file(folder, f"is {what} with no weights file of its own; the subfolder(s) {', '.join(parts)} hold weights: open one, e.g. {folder / parts[0]}{run}")
    foreign = sorted(p.name for p in folder.iterdir() if p.suffix in _FOREIGN_WEIGHTS)[:3]
    if foreign:  # transformers' TensorFlow and Flax files, llama.cpp's, ONNX
        raise bad_file(folder, f"holds weights paramscope does not read ({', '.join(foreign)}): it reads PyTorch checkpoints and safetensors")
    raise bad_file(folder, "is a folder without a weights file (no *.safetensors, *.bin, *.pt or index)")


# Other frameworks' weight files a model folder may hold instead (said by name, never read).
_FOREIGN_WEIGHTS = (".h5", ".msgpack", ".gguf", ".onnx", ".keras", ".tflite", ".pb")


def shard_note(path: Path) -> str | None:
    """A note when ``path`` is one shard of a sharded model (a file dialog lets a user pick
    ``model-00001-of-00003.safetensors``): which index to open for the whole model."""
    if path.suffix not in (".safetensors", ".bin") or not _SHARD.search(path.stem):
        return None
    for index in sorted(path.parent.glob("*.index*.json"))[:4]:
        try:
            if index.stat().st_size > 64 << 20:
                continue
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, ValueError, RecursionError, AttributeError):
            continue
        if isinstance(weight_map, dict) and path.name in set(weight_map.values()):
            shards = len(set(weight_map.values()))
            return f"{path.name} is one of {shards} shards of {index.name}: open the folder or the index for the whole model"
    return None


def cached_snapshot(folder: Path) -> Path | None:
    """The snapshot to open in a Hugging Face cache folder (``models--org--name`` with ``refs/``
    and ``snapshots/``): the one ``refs/main`` names, else the only one; None for other folders."""
    snapshots = folder / "snapshots"
    if not (folder.name.startswith("models--") and snapshots.is_dir()):
        return None
    try:
        named = (folder / "refs" / "main").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    if named.isalnum() and (snapshots / named).is_dir():
        return snapshots / named
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    if len(found) == 1:
        return found[0]
    if found:
        raise bad_file(folder, f"holds {len(found)} snapshots and no refs/main naming one; open one of {snapshots}/*")
    return None


def _in_number_order(path: Path) -> list[int | str]:
    """checkpoint-500 before checkpoint-1000 (numbers by value, the rest by text)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _parts_with_weights(folder: Path, most: int = 64) -> list[str]:
    """Subfolders (at most ``most`` looked at) that hold a weights file: a pipeline's unet, vae,
    text_encoder, or a run's checkpoint folders."""
    found = []
    for sub in sorted(folder.iterdir(), key=_in_number_order)[:most]:
        try:
            if sub.is_dir() and any(p.suffix in _WEIGHT_SUFFIXES or p.name.endswith(".index.json") for p in sub.iterdir()):
                found.append(sub.name)
        except OSError:  # an unreadable subfolder is not one to suggest
            continue
    return found
