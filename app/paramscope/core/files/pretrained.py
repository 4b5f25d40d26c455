"""A ``save_pretrained`` folder opened as its real model class, when transformers can build it.

With a ``config.json`` naming a class that transformers (or diffusers) ships, the model is built
from the config with that library's own class and the folder's tensors (read as any checkpoint)
are loaded into it: the tree shows the real module types, ties come from the model, and forward
and backward work. Nothing is fetched from a hub and no code from the folder runs: a config
that asks for its own code (``auto_map``) is not built, and neither is anything over
:data:`~paramscope.core.files.regions.LAZY_BYTES` (building initializes every weight first).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paramscope.core.files.regions import LAZY_BYTES
from paramscope.core.files.statedict import Checkpoint

if TYPE_CHECKING:
    from paramscope.core.files.weights_fit import WeightsReport


def _config(folder: Path) -> dict | None:
    path = folder / "config.json"
    if not path.is_file() or path.stat().st_size > 1 << 20:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _transformers_model(config: dict, folder: Path) -> nn.Module | None:
    architectures = config.get("architectures")
    if not (isinstance(architectures, list) and architectures and isinstance(architectures[0], str)):
        return None
    import transformers

    cls = getattr(transformers, architectures[0], None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return None
    return cls(transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True))


def _diffusers_model(config: dict, folder: Path) -> nn.Module | None:
    name = config.get("_class_name")
    if not isinstance(name, str) or importlib.util.find_spec("diffusers") is None:
        return None
    import diffusers

    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return None
    return cls.from_config(cls.load_config(str(folder)))


def build_pretrained(folder: Path, checkpoint: Checkpoint) -> tuple[nn.Module | None, list[str]]:
    """The folder's model class filled with ``checkpoint``'s tensors (None: show the tensors),
    and notes saying what was built or why not."""
    config = _config(folder)
    if config is None or checkpoint.module is not None:
        return None, []
    if "auto_map" in config:
        return None, ["config.json asks for its own modelling code, which is never run from a data folder; shown from the tensors"]
    quantized = config.get("quantization_config")
    if quantized is not None:  # GPTQ, AWQ, bitsandbytes: layers of that library hold other tensors
        method = quantized.get("quant_method") if isinstance(quantized, dict) else None
        what = f" with {method}" if isinstance(method, str) and method.isprintable() and len(method) < 40 else ""
        return None, [f"config.json describes a model quantized{what}, whose layers only its quantization library builds; shown from the tensors as stored"]
    # A lazily opened folder (over 1 GiB) is built on the meta device: shapes and ties only; the
    # checkpoint's loader reads each tensor when it is looked at or edited.
    lazy = checkpoint.loader is not None
    total = sum(t.numel() * t.element_size() for t in checkpoint.tensors.values())
    if total > LAZY_BYTES and not lazy:
        return None, ["the model class is not built for checkpoints over 1 GiB read whole; shown from the tensors"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched, ever
    if "_class_name" not in config and importlib.util.find_spec("transformers") is None:
        return None, ["install transformers to see the real model classes (pip install 'paramscope[zoo]')"]
    try:
        model = _built(config, folder, _parameters_on_meta())
        if lazy:  # the files' tensors are read when looked at: what they hold becomes a placeholder
            _placeholders_for(model, set(checkpoint.all_tensors()))
    except Exception as exc:  # a config this library version cannot build: the tensors still open
        return None, [f"config.json names a model that could not be built ({type(exc).__name__}: {exc}); shown from the tensors"]
    if model is None:
        return None, _not_shipped(config)
    from paramscope.core.files.weights_fit import compare_weights

    tensors = checkpoint.all_tensors()
    fit = compare_weights(model, tensors)
    misfit = _misfit(fit)
    if misfit is not None and not lazy:  # an older layout of the class, as transformers converts it?
        loaded, notes = _loaded_by_transformers(model, tensors)
        if loaded is not None:
            return loaded, notes
    if misfit is not None:  # the class with its random values would pass for the files' weights
        return None, [f"the files do not fit config.json's {type(model).__name__} ({misfit}); shown from the tensors"]
    converted = as_in_files(model, tensors)
    if lazy:
        notes = _placed(model, checkpoint)
    elif _assigned(model, tensors, fit):  # the files' tensors are the parameters: no second copy
        notes = _fill(model, tensors, fit, assign=True)
    else:  # built on the CPU, the files' values copied in (a tie the files break, a gap)
        model = _built(config, folder, torch.device("cpu"))
        converted = as_in_files(model, tensors)
        notes = _fill(model, tensors, fit)
    return model, notes[:1] + converted + notes[1:]


def _built(config: dict, folder: Path, device: Any) -> nn.Module | None:
    """config.json's class, built under ``device`` (a torch device or a context like it)."""
    with device:
        model = _diffusers_model(config, folder) if "_class_name" in config else _transformers_model(config, folder)
    if callable(getattr(model, "tie_weights", None)):  # (with parameters on meta the class left them apart)
        model.tie_weights()
    return model


def _parameters_on_meta() -> Any:
    """Parameters on the meta device, buffers as the class computes them (a rotary table), where
    accelerate is installed (transformers' companion); else the CPU. A model read whole then
    takes the files' tensors as its parameters: no float32 copy initialized and overwritten (a
    bfloat16 0.5B model took 3.8 GB and 12 s to open, from_pretrained 0.4 GB and 5 s)."""
    try:
        from accelerate import init_empty_weights
    except ImportError:
        return torch.device("cpu")
    return init_empty_weights(include_buffers=False)


def _placeholders_for(model: nn.Module, names: set[str]) -> None:
    """Every parameter and buffer of ``model`` the files hold becomes a shape-only placeholder
    (the loader reads its values); buffers the files lack keep the values the class computed."""

    def placeholder(held_as: list[str], tensor: torch.Tensor) -> torch.Tensor | None:
        if tensor.device.type == "meta" or not names.intersection(held_as):
            return None
        meta = torch.empty_like(tensor, device="meta")
        return nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta

    _replace(model, placeholder)


def _replace(model: nn.Module, new_for: Callable[[list[str], torch.Tensor], torch.Tensor | None]) -> list[torch.Tensor]:
    """Replace ``model``'s parameters and buffers: ``new_for(names, tensor)`` gives each tensor's
    replacement (None: keep it), asked once per tensor with every name it is registered under, and
    put under all of them: ties stay ties. Returns the replacements."""
    places: dict[int, tuple[torch.Tensor, list[tuple[dict, str, str]]]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for table in (module._parameters, module._buffers):
            for key, tensor in table.items():
                if tensor is not None:
                    places.setdefault(id(tensor), (tensor, []))[1].append((table, key, f"{prefix}.{key}" if prefix else key))
    replaced = []
    for tensor, registered in places.values():
        new = new_for([name for _, _, name in registered], tensor)
        if new is not None:
            for table, key, _ in registered:
                table[key] = new
            replaced.append(new)
    return replaced


def _assigned(model: nn.Module, tensors: dict[str, torch.Tensor], fit: WeightsReport) -> bool:
    """Whether the files' tensors can become ``model``'s (built with parameters on meta): every
    parameter in the files under one value, every buffer real or in the files."""
    if fit.tie_conflicts or fit.missing or fit.mismatched:
        return False
    with_values = set(tensors)
    return all(
        t.device.type != "meta" or n in with_values for n, t in [*model.named_parameters(), *model.named_buffers()]
    )


def _loaded_by_transformers(model: nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[nn.Module | None, list[str]]:
    """The files' tensors loaded by transformers' own ``from_pretrained(state_dict=...)``, which
    converts the layouts its classes had before (in transformers 5: ViT's attention names, a
    mixture of experts' per-expert weights merged into one tensor); None unless they then fit."""
    load, config = getattr(type(model), "from_pretrained", None), getattr(model, "config", None)
    if load is None or config is None:
        return None, []
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its warnings and progress bar say what the notes say
    hf_logging.disable_progress_bar()
    try:
        loaded, info = load(None, config=config, state_dict=tensors, output_loading_info=True)
    except Exception:  # a layout it does not know either: shown from the tensors
        return None, []
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    if info.get("mismatched_keys") or (info.get("missing_keys") and info.get("unexpected_keys")):
        return None, []
    loaded.eval()
    notes = [
        f"built {type(loaded).__name__} from config.json (transformers); the files' names are not the class's "
        f"({len(tensors)} tensors in the files, {len(loaded.state_dict())} in the model): loaded as from_pretrained "
        "loads them (it converts older layouts and a base model's names)"
    ]
    if info.get("missing_keys"):
        notes.append(f"{len(info['missing_keys'])} tensor(s) of the model not in the files keep their initial values, e.g. {sorted(info['missing_keys'])[0]}")
    return loaded, notes


def adapter_note(folder: Path) -> str | None:
    """What a PEFT adapter folder's ``adapter_config.json`` says: method, rank and scale, the
    layers it adapts, and for which base model (the tensors alone are A and B matrices)."""
    path = folder / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.stat().st_size < 1 << 20 else None
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or not isinstance(config.get("peft_type"), str):
        return None
    parts = [f"a PEFT {config['peft_type']} adapter"]
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(rank, int) and rank > 0 and isinstance(alpha, int | float) and not isinstance(alpha, bool):
        scale = alpha / rank**0.5 if config.get("use_rslora") is True else alpha / rank  # (rsLoRA: sqrt)
        parts.append(f"rank {rank}, lora_alpha {alpha:g} (B @ A is scaled by {scale:g})")
    targets = config.get("target_modules")
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        parts.append(f"adapting {', '.join(targets[:6])}" + (" ..." if len(targets) > 6 else ""))
    mapping = config.get("auto_mapping") if isinstance(config.get("auto_mapping"), dict) else {}
    base = config.get("base_model_name_or_path") or mapping.get("base_model_class")
    if isinstance(base, str) and base.isprintable() and len(base) < 200:
        parts.append(f"for {base}")
    return "; ".join(parts) + ": these are the adapter's own tensors"


def _not_shipped(config: dict) -> list[str]:
    """A note when config.json names a class the library does not have (a custom or newer model)."""
    library = "diffusers" if "_class_name" in config else "transformers"
    architectures = config.get("architectures")
    named = config.get("_class_name") if library == "diffusers" else architectures[0] if isinstance(architectures, list) and architectures else None
    if not (isinstance(named, str) and named.isprintable() and len(named) < 100):
        return []
    if importlib.util.find_spec(library) is None:
        return [f"config.json names {named}: install {library} to see the real model class (pip install 'paramscope[zoo]')"]
    return [f"config.json names {named}, a class the installed {library} does not have; shown from the tensors"]


def _misfit(fit: WeightsReport) -> str | None:
    """Why the files are not this class's weights: a tensor of another shape or kind, or tensors
    missing and others left over (renamed or quantized layers). None when they fit."""
    if fit.mismatched:
        return fit.mismatched[0].describe()
    if fit.missing and fit.unexpected:
        hint = f"; the names match after {fit.suggestion.describe()}" if fit.suggestion else ""
        return (
            f"{len(fit.missing)} of its tensors are not in the files, e.g. {fit.missing[0]}, and "
            f"{len(fit.unexpected)} in the files are not in it, e.g. {fit.unexpected[0]}{hint}"
        )
    return None


def as_in_files(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Give each floating parameter and buffer of ``model`` the dtype its tensor has in the files.

    The class is built in torch's default float32; loading bfloat16 weights into it would show
    float32, double the memory and make an export twice the size of the files. transformers'
    ``from_pretrained`` builds in the checkpoint's dtype too. Tensors the files lack (a rotary
    table computed at build time) keep the dtype the class gave them.
    """

    def in_files_dtype(held_as: list[str], tensor: torch.Tensor) -> torch.Tensor | None:
        stored = next((tensors[n] for n in held_as if n in tensors), None)
        if stored is None or not (tensor.is_floating_point() and stored.is_floating_point()) or stored.dtype == tensor.dtype:
            return None
        if isinstance(tensor, nn.Parameter):  # in place: the same object wherever it is held
            tensor.data = tensor.data.to(stored.dtype)
            return tensor
        return tensor.to(stored.dtype)

    converted = _replace(model, in_files_dtype)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in converted})
    return [f"{len(converted)} tensor(s) in {', '.join(dtypes)} as in the files (the class builds them as float32)"] if converted else []


def _placed(model: nn.Module, checkpoint: Checkpoint) -> list[str]:
    """Notes for a model built on the meta device whose values the checkpoint's loader reads."""
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.eval()
    files = set(checkpoint.all_tensors())
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers() if n in files]
    missing = [n for n in names if n not in files]
    notes = [
        f"built {type(model).__name__} from config.json on the meta device: each tensor is read "
        "from the files when it is looked at or edited"
    ]
    if missing:
        notes.append(f"{len(missing)} tensor(s) of the model not in the files have no values, e.g. {missing[0]}")
    return notes


def _fill(model: nn.Module, tensors: dict[str, torch.Tensor], fit: WeightsReport, assign: bool = False) -> list[str]:
    conflicts = fit.tie_conflicts
    with torch.no_grad():
        result = model.load_state_dict(tensors, strict=False, assign=assign)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.eval()  # as from_pretrained returns it: dropout off
    notes = [f"built {type(model).__name__} from config.json ({type(model).__module__.split('.')[0]}); weights from the folder"]
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    missing = [k for k in result.missing_keys if k not in tied]
    if missing:
        notes.append(f"{len(missing)} tensor(s) of the model not in the files keep their initial values, e.g. {missing[0]}")
    notes += [f"tied tensor with different values in the files: {c.describe()} (as torch loads it)" for c in conflicts]
    if result.unexpected_keys:
        notes.append(f"{len(result.unexpected_keys)} tensor(s) in the files not in the model, e.g. {result.unexpected_keys[0]}")
    return notes
