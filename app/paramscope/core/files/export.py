"""Export a state_dict as ``.pt`` or ``.safetensors``, atomically and verified.

Every write goes to a temporary file in the target folder, is read back with the same loaders
that open it later (``torch.load``, the safetensors reader) and compared bit for bit with the
model, ties included, and only then renamed over the target (``os.replace``); with ``sync`` it is
also flushed to disk first. A failure or cancel at any point leaves the old target (or none)
untouched. Renaming also avoids torch's SIGBUS when saving over a file the model was mmap-loaded
from: the old file's bytes stay alive under the mapping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.atomic import UnbufferedFile, write_atomically
from paramscope.core.files.module_tree import ORIGINAL_NAMES
from paramscope.core.files.safetensors_io import METADATA_KEY, aliases_from_metadata
from paramscope.core.files.safetensors_write import dedupe, write_safetensors
from paramscope.core.files.safety import first_line
from paramscope.core.tasks import TaskState, ensure_state

FORMATS = {".pt": "pt", ".pth": "pt", ".bin": "pt", ".safetensors": "safetensors"}


class ExportError(ParamscopeError):
    """An export failed; the target was left as it was."""


@dataclass(frozen=True)
class ExportInputs:
    """What to export: ``model`` (or the submodule ``module``) to ``path``."""

    model: nn.Module
    path: Path
    module: str = ""  # a module prefix: export that subtree with names relative to it
    loader: Callable[[str], torch.Tensor] | None = None  # values of a lazy source's placeholders
    sync: bool = False  # wait for the disk before renaming (see write_state_dict)


@dataclass
class ExportResult:
    path: Path
    format: str
    tensors: int  # names written (aliases included)
    stored: int  # tensors stored (each shared tensor once)
    nbytes: int
    aliases: dict[str, str] = field(default_factory=dict)


def export_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(
            f"{path}: unknown export format {path.suffix!r}: use .pt, .pth, .bin or .safetensors"
        )
    return fmt


def state_dict_for(
    model: nn.Module, module: str = "", loader: Callable[[str], torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The state_dict of ``model`` or of its submodule ``module`` (names relative to it).

    ``loader`` fills in shape-only placeholders of a lazily opened source (by full name).
    """
    if module:
        try:
            model = model.get_submodule(module)
        except AttributeError:
            raise ExportError(f"{module}: no such module in the model") from None
    state = model.state_dict()
    _refuse_unwritable(state)
    lazy = [k for k, v in state.items() if isinstance(v, nn.parameter.UninitializedTensorMixin)]
    if lazy:
        raise ExportError(
            f"{lazy[0]}: uninitialized (lazy) parameter; run a forward before exporting"
        )
    if loader is not None:
        _fill_placeholders(state, model.state_dict(keep_vars=True), loader, f"{module}." if module else "")
    original = model.__dict__.get(ORIGINAL_NAMES) if not module else None  # (a whole file only)
    if original:
        return {original.get(name, name): tensor for name, tensor in state.items()}
    return dict(state)


def _fill_placeholders(
    state: dict[str, torch.Tensor],
    live: dict[str, torch.Tensor],
    loader: Callable[[str], torch.Tensor],
    prefix: str,
) -> None:
    """Load each shape-only placeholder once and put it under all its names (ties stay ties).

    A tied placeholder is loaded by whichever of its names the file holds (a file written by
    ``save_pretrained`` keeps one name of a tie).
    """
    names: dict[int, list[str]] = {}  # the live object's identity: state_dict() copies are new
    for key, value in live.items():
        if value.device.type == "meta":
            names.setdefault(id(value), []).append(key)
    for keys in names.values():
        values, problem = None, None
        for key in keys:
            try:
                values = loader(prefix + key)
                break
            except ParamscopeError as exc:
                problem = problem or exc
        if values is None:
            assert problem is not None
            raise problem
        for key in keys:
            state[key] = values


def _refuse_unwritable(state: dict[str, object]) -> None:
    """One line for what a plain tensor file cannot hold and read back bit for bit: packed
    quantized weights (``quantize_dynamic``), non-tensor entries, sparse tensors."""
    packed_first = sorted(state.items(), key=lambda item: not isinstance(item[1], tuple))
    for key, value in packed_first:
        if not isinstance(value, torch.Tensor):
            raise ExportError(
                f"{key}: packed quantized weights or a {type(value).__name__} entry, not a tensor: "
                "export the model before quantizing, or torch.save(model.state_dict()) yourself"
            )
        if value.is_quantized:
            raise ExportError(
                f"{key}: a quantized {str(value.dtype).removeprefix('torch.')} tensor cannot be "
                "exported; export the model before quantizing"
            )
        if value.layout != torch.strided:
            layout = str(value.layout).removeprefix("torch.")
            raise ExportError(
                f"{key}: a {layout} tensor cannot be exported: give the module a dense buffer "
                "(tensor.to_dense()) or torch.save it yourself"
            )


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes, flat on the CPU, as wide integers where they can be viewed so.

    Integers compare every bit (NaN payloads, -0.0) and int64 ~5x faster than single bytes.
    """
    raw = (
        t.detach().to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8)
    )
    for wide in (torch.int64, torch.int32):
        if raw.numel() % wide.itemsize == 0:
            try:
                return raw.view(wide)
            except RuntimeError:  # a misaligned view: compare bytes
                break
    return raw


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, same shape and the same bytes."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _verify(
    expected: dict[str, torch.Tensor], written: dict[str, torch.Tensor], target: Path
) -> None:
    """Raise unless ``written`` (read back from the file) is ``expected`` bit for bit, ties kept."""
    missing = sorted(set(expected) - set(written))
    if missing:
        raise ExportError(
            f"{target}: read-back check failed: {len(missing)} name(s) missing, e.g. {missing[:3]}"
        )
    extra = sorted(set(written) - set(expected))
    if extra:
        raise ExportError(
            f"{target}: read-back check failed: {len(extra)} name(s) not in the model, e.g. {extra[:3]}"
        )
    for name, tensor in expected.items():
        if not _same_bits(tensor, written[name]):
            raise ExportError(f"{target}: read-back check failed: {name} differs from the model")
    # names that were one tensor must still be one
    _, aliases = dedupe(expected)
    for alias, kept in aliases.items():
        a, k = written[alias], written[kept]
        if a.untyped_storage().data_ptr() != k.untyped_storage().data_ptr():
            raise ExportError(
                f"{target}: read-back check failed: {alias} is no longer tied to {kept}"
            )


def _read_back(tmp: Path, fmt: str) -> dict[str, torch.Tensor]:
    """The written file's tensors as torch's and safetensors' loaders see them, mapped (not
    copied: the compare reads each page once). Mapping is safe here, unlike for a file the user
    opens: nobody else writes this hidden temporary file."""
    if fmt == "pt":
        return dict(torch.load(tmp, map_location="cpu", weights_only=True, mmap=True))
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(tmp), framework="pt") as handle:
        metadata = handle.metadata() or {}
    stored = load_file(str(tmp))
    aliases = aliases_from_metadata(metadata, set(stored))
    return {**stored, **{alias: stored[target] for alias, target in aliases.items()}}


def _save_pt(state_dict: dict[str, torch.Tensor], tmp: Path) -> None:
    """``torch.save`` into a file that keeps the first failed write (torch wraps it)."""
    with UnbufferedFile(tmp) as out:
        try:
            torch.save(state_dict, out)
        except RuntimeError:
            if out.error is not None:  # torch wraps a failed write in its own error
                raise out.error from None
            raise


def _check_target(target: Path) -> None:
    if target.is_dir():
        raise ExportError(f"{target}: is a folder; give a file name ending in .pt or .safetensors")
    folder = target.parent
    if not folder.is_dir():
        raise ExportError(f"{target}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"{target}: permission denied: cannot write in {folder}")
    if target.exists() and not os.access(target, os.W_OK):
        raise ExportError(f"{target}: permission denied: the file is read-only")


def write_state_dict(
    state_dict: dict[str, torch.Tensor],
    path: Path | str,
    state: TaskState | None = None,
    sync: bool = False,
) -> ExportResult:
    """Write ``state_dict`` to ``path`` atomically, verified by reading it back.

    Args:
        state_dict: name -> tensor; names that are one tensor are stored once (and stay tied).
        path: the target; ``.pt``/``.pth``/``.bin`` (``torch.save``) or ``.safetensors``.
        state: progress and cancel; a cancel before the final rename leaves the target as it was.
        sync: wait until the file is on disk (fsync) before renaming it over the target, so that
            even a power cut leaves the old or the new file; about a second per GB on these disks.
            Without it a failure, kill or cancel still never leaves a half-written target.

    Raises:
        ExportError: one line naming the target and the problem; the target is untouched.
        Cancelled: the user cancelled; the target is untouched.

    Example:
        >>> write_state_dict(nn.Linear(2, 1).state_dict(), "/tmp/linear.safetensors").stored
        2
    """
    state = ensure_state(state)
    target = Path(path).expanduser()
    fmt = export_format(target)
    if fmt == "safetensors" and METADATA_KEY in state_dict:
        raise ExportError(
            f"{target}: a tensor named {METADATA_KEY!r} cannot be stored in safetensors (reserved name)"
        )
    _check_target(target)
    state.progress(0.05, f"writing {target.name}")
    aliases: dict[str, str] = {}

    def write(tmp: Path) -> None:
        nonlocal aliases
        aliases = _write_file(state_dict, tmp, fmt, target)

    def check(tmp: Path) -> None:
        state.progress(0.6, "checking the written file")
        _check_file(state_dict, tmp, fmt, target)
        state.progress(0.95, "replacing the target")

    try:
        write_atomically(target, write, check, sync=sync)
    except OSError as exc:
        raise ExportError(f"{target}: cannot write: {exc.strerror or exc}") from None
    state.progress(1.0, f"wrote {target.name}")
    stored = len(state_dict) - len(aliases)
    nbytes = target.stat().st_size
    return ExportResult(target, fmt, len(state_dict), stored, nbytes, aliases)


def _write_file(state_dict: dict[str, torch.Tensor], tmp: Path, fmt: str, target: Path) -> dict[str, str]:
    """Write ``state_dict`` to the temporary file ``tmp``; returns ``{alias: stored name}``."""
    try:
        if fmt == "pt":
            _save_pt(state_dict, tmp)
            return dedupe(state_dict)[1]
        return write_safetensors(state_dict, tmp)
    except (RuntimeError, ValueError, TypeError) as exc:  # the libraries' refusals
        raise ExportError(f"{target}: cannot write: {first_line(exc)}") from None


def _check_file(state_dict: dict[str, torch.Tensor], tmp: Path, fmt: str, target: Path) -> None:
    """Read ``tmp`` back with the loader that opens it later and compare it with ``state_dict``."""
    try:
        written = _read_back(tmp, fmt)
    except Exception as exc:  # the reader's own errors name the temporary file
        problem = first_line(exc).removeprefix(f"{tmp}: ")
        raise ExportError(f"{target}: read-back check failed: {problem}") from None
    _verify(state_dict, written, target)


def run_export(inputs: ExportInputs, state: TaskState | None = None) -> ExportResult:
    """Worker entry point: export ``inputs.model`` (or a subtree) to ``inputs.path``."""
    return write_state_dict(
        state_dict_for(inputs.model, inputs.module, inputs.loader), inputs.path, state, inputs.sync
    )


def export_model(
    model: nn.Module,
    path: Path | str,
    module: str = "",
    state: TaskState | None = None,
    loader: Callable[[str], torch.Tensor] | None = None,
    sync: bool = False,
) -> ExportResult:
    """Export ``model``'s state_dict (or the subtree ``module``) to ``path``."""
    return run_export(ExportInputs(model, Path(path), module, loader, sync), state)

