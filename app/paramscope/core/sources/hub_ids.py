"""A Hugging Face model id (``Qwen/Qwen2.5-0.5B``, ``gpt2``) as a source: the model that
transformers or ``hf download`` already put in this machine's cache. Nothing is downloaded.

The cache is where ``huggingface_hub`` keeps it: ``$HF_HUB_CACHE``, else the deprecated
``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``,
else ``~/.cache/huggingface/hub``; a model is its folder ``models--ORG--NAME`` there, whose
snapshot :func:`paramscope.core.files.folders.weights_in_folder` opens.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# what the Hub accepts as a repo id: an optional namespace, a name; letters, digits, - _ .
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
# a file name, not a model: its absence is a missing file (runs/last.ckpt)
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json", ".py", ".pkl", ".tar", ".pt2", ".metadata")


def hub_cache() -> Path:
    """The folder the Hugging Face hub caches models in, by the environment as ``huggingface_hub`` reads it."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.path.expandvars(os.environ[variable])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def looks_like_model_id(spec: str) -> bool:
    """Whether ``spec`` reads as a model id (``org/name`` or ``name``) rather than a file's path.

    Example:
        >>> [looks_like_model_id(s) for s in ("Qwen/Qwen2.5-0.5B", "gpt2", "runs/last.ckpt", "./gpt2", "a/b/c")]
        [True, True, False, False, False]
    """
    return _REPO_ID.match(spec) is not None and not spec.lower().endswith(_FILE_SUFFIXES) and ".." not in spec


def cached_model(spec: str) -> Path | None:
    """The cache folder of model id ``spec`` (``models--ORG--NAME``), or None when it is not there."""
    if not looks_like_model_id(spec):
        return None
    folder = hub_cache() / f"models--{spec.replace('/', '--')}"
    return folder if folder.is_dir() else None


def not_cached_message(spec: str) -> str:
    """What to say about a model id that is neither a file nor in the cache."""
    return (
        f"{spec}: no such file, and no model of that id in the Hugging Face cache ({hub_cache()}); "
        f"nothing is downloaded: fetch it first (hf download {spec}), or open a file of it by URL "
        f"(https://huggingface.co/{spec}/resolve/main/model.safetensors)"
    )
