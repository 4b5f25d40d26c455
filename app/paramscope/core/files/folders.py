"""Folders as people save them: which file in a ``save_pretrained`` folder holds the weights.

transformers writes ``model.safetensors`` (or shards and ``model.safetensors.index.json``, or the
older ``pytorch_model.bin``), diffusers ``diffusion_pytorch_model.safetensors``, PEFT
``adapter_model.safetensors``; a training script often leaves a folder with one ``.pt`` file.
"""

from __future__ import annotations

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


def weights_in_folder(folder: Path) -> Path:
    """The file to open for ``folder``: a known name, its only index, or its only weights file.

    Raises:
        SourceError: nothing to open, or a choice only the user can make (named in the message).
    """
    for name in KNOWN_WEIGHTS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
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
    raise bad_file(folder, "is a folder without a weights file (no *.safetensors, *.bin, *.pt or index)")
