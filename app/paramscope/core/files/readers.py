"""One reader per format, chosen by content; :func:`open_file` is the registered opener."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from paramscope.core.errors import ParamscopeError, SourceError
from paramscope.core.files.archives import load_exported, load_torchscript
from paramscope.core.files.folders import known_weights, shard_note, weights_in_folder
from paramscope.core.files.module_tree import NO_FORWARD, build_module
from paramscope.core.files.opened import OpenedModel
from paramscope.core.files.optimizer_state import summarize_for_model
from paramscope.core.files.pretrained import adapter_note, build_pretrained
from paramscope.core.files.safetensors_io import read_safetensors
from paramscope.core.files.safety import bad_file, first_line
from paramscope.core.files.sharded import read_sharded
from paramscope.core.files.sniff import Sniffed, sniff
from paramscope.core.files.statedict import Checkpoint, split_checkpoint
from paramscope.core.files.torch_io import load_torch_file
from paramscope.core.files.unknown import stand_in_names
from paramscope.core.model.dequantize import quantized_note
from paramscope.core.tasks import TaskState, part

_TORCH_KINDS = ("torch_zip", "torch_legacy", "pickle", "tar")
# Of a file's open, the share of reading (the rest is the module tree): about even for a
# safetensors file of tiny tensors, where the time is long enough to need a progress bar.
READ_SHARE = 0.5
LAZY_FORWARD = (
    "the checkpoint is over 1 GiB, so it opened lazily (each tensor read when looked at): forward "
    "and backward need every weight in memory; open FILE.py:NAME --weights THIS_FOLDER to run it"
)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Reading ``path``: whatever escapes a reader becomes one line naming the file (a hostile
    file must never surface as a traceback or an "unexpected error"), and torch's own warnings
    (pickle protocol 4/5, TypedStorage deprecation) are not printed before it; ours still are."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"torch(\.|$)")
        try:
            yield
        except ParamscopeError:
            raise
        except RecursionError:
            raise bad_file(path, "nests too deeply or refers to itself; refusing to read it") from None
        except MemoryError:
            raise bad_file(path, "needs more memory than is available to read it") from None
        except Exception as exc:  # a reader's bug or a library's surprise
            raise bad_file(path, f"cannot be read ({type(exc).__name__}: {first_line(exc)})") from None


def read_checkpoint(
    path: Path, trust: bool = False, lazy: bool | None = False, entry: str | None = None, state: TaskState | None = None
) -> Checkpoint:
    """The tensors (and extras) of a state_dict file or folder: torch, safetensors, a sharded
    index, a DCP folder or a save_pretrained folder.

    Whole modules (trusted pickles, TorchScript, .pt2) come back as ``Checkpoint.module``.
    Tensors are read into memory; with ``lazy`` (None: for files over
    :data:`~paramscope.core.files.regions.LAZY_BYTES`) safetensors come back as placeholders
    and ``Checkpoint.loader`` reads one on demand. ``entry`` picks the weight set of a training
    checkpoint that holds several (``"ema"``). ``state``: progress and cancel, for safetensors
    files and shards (a torch file is one call into torch).

    Raises:
        SourceError: one line naming the file and the problem.
        UntrustedFileError: the file needs code to run and ``trust`` is False.
    """
    path = Path(path)
    with reading(path):
        checkpoint = _read_checkpoint(path, trust, lazy, entry, state=state)
    if entry is not None and checkpoint.entry != entry:  # a format without entries
        raise bad_file(path, f"has no entries to choose from (--entry {entry}): it holds one set of weights")
    return checkpoint


def dcp_folder_of(path: Path) -> Path:
    """The torch.distributed.checkpoint folder when ``path`` is one of its files (``.metadata``,
    ``__0_0.distcp``: what a file dialog lets a user pick), else ``path``.

    Read alone, ``.metadata`` is a plain pickle that would need trust; the folder's reader checks
    it without running anything.
    """
    from paramscope.core.files.dcp import METADATA_FILE, is_dcp_folder

    if (path.name == METADATA_FILE or path.suffix == ".distcp") and is_dcp_folder(path.parent):
        return path.parent
    return path


def _read_checkpoint(
    path: Path,
    trust: bool,
    lazy: bool | None,
    entry: str | None,
    sniffed: Sniffed | None = None,
    state: TaskState | None = None,
) -> Checkpoint:
    path = dcp_folder_of(path)
    if path.is_dir():
        from paramscope.core.files.dcp import is_dcp_folder, read_dcp_checkpoint

        if is_dcp_folder(path):  # torch.distributed.checkpoint: read through its safe reader
            return read_dcp_checkpoint(path)
        path = weights_in_folder(path)  # a save_pretrained folder, or one holding one weights file
    sniffed = sniffed or sniff(path)  # (a zip's directory is parsed here: once per open)
    if sniffed.kind == "safetensors":
        return read_safetensors(path, lazy, state)
    if sniffed.kind == "index":
        return read_sharded(path, trust, lazy, state)
    if sniffed.kind in ("npz", "npy"):
        from paramscope.core.files.numpy_io import read_npy, read_npz

        return read_npz(path) if sniffed.kind == "npz" else read_npy(path)
    if sniffed.kind == "torchscript":
        return Checkpoint({}, module=load_torchscript(sniffed, trust))
    if sniffed.kind == "pt2":
        return Checkpoint({}, module=load_exported(sniffed, trust))
    if sniffed.kind == "tar" and not trust:
        from paramscope.core.files.safety import UntrustedFileError

        raise UntrustedFileError(path, "torch's oldest (tar) format is read with full unpickling", "it is a tar-format torch file")
    if sniffed.kind in _TORCH_KINDS:
        obj = load_torch_file(path, trust, sniffed, state)
        try:
            checkpoint = split_checkpoint(obj, str(path), entry)
        except ValueError as exc:
            raise bad_file(path, str(exc)) from None
        if not trust and (stand_ins := stand_in_names(obj)):
            checkpoint.notes.append(
                "objects of classes not loaded (shown by name, none of their code ran): " + ", ".join(stand_ins)
            )
        return checkpoint
    raise bad_file(path, f"unsupported format {sniffed.kind}")  # pragma: no cover


def state_dict_of(checkpoint: Checkpoint) -> dict:
    """Every name -> tensor, aliases included, whether the file held tensors or a module."""
    if checkpoint.module is not None:
        return dict(checkpoint.module.state_dict())
    return checkpoint.all_tensors()


def open_file(path: Path, trust: bool, entry: str | None = None, state: TaskState | None = None) -> OpenedModel | None:
    """Open a file or folder source (what :func:`paramscope.core.sources.sources.open_source` calls).

    ``entry``: the weight set to open in a checkpoint that holds several (``"ema"``); ``state``:
    progress and cancel (reading, then the module tree).
    """
    path = Path(path)
    with reading(path):
        opened = _open_file(path, trust, entry, state)
    if opened is not None and entry is not None and opened.entry != entry:  # a format without entries
        raise bad_file(path, f"has no entries to choose from (--entry {entry}): it holds one set of weights")
    return opened


def _with_checkpoint(opened: OpenedModel, checkpoint: Checkpoint) -> OpenedModel:
    """``opened`` with what the checkpoint held beside the weights: weight sets, optimizer states."""
    opened.entry, opened.entries = checkpoint.entry, list(checkpoint.entries)
    opened.optimizers, notes = summarize_for_model(checkpoint.optimizer_states, opened.model)
    opened.notes.extend(notes)
    checkpoint.optimizer_states = []  # their tensors are summarized: let them go
    return opened


def _open_file(path: Path, trust: bool, entry: str | None, state: TaskState | None) -> OpenedModel | None:
    path = dcp_folder_of(path)
    if path.is_dir():
        from paramscope.core.files.dcp import is_dcp_folder, open_dcp

        if is_dcp_folder(path):
            return open_dcp(path, state)
        path = weights_in_folder(path)
    sniffed = sniff(path)
    # (open_file checks the entry)
    checkpoint = _read_checkpoint(path, trust, None, entry, sniffed, part(state, 0.0, READ_SHARE))
    source = str(path)
    known = known_weights(path.name)
    if known in ("adapter_model.safetensors", "adapter_model.bin"):
        checkpoint.notes += [note] if (note := adapter_note(path.parent)) else []
    if known and checkpoint.tensors:
        built, built_notes = build_pretrained(path.parent, checkpoint)
        checkpoint.notes.extend(built_notes)
        if built is not None:
            opened = OpenedModel(
                built, source, "pretrained", path=path, notes=checkpoint.notes, extras=dict(checkpoint.extras),
                loader=checkpoint.loader, forward_unavailable=LAZY_FORWARD if checkpoint.loader is not None else None,
            )  # fmt: skip
            return _with_checkpoint(opened, checkpoint)
    if checkpoint.module is not None:
        kind = {"torchscript": "torchscript", "pt2": "export"}.get(sniffed.kind, "pickled_module")
        model: nn.Module = checkpoint.module
        notes = list(checkpoint.notes)
        if kind == "pickled_module":
            notes.append("opened with full unpickling because you trusted this file")
        return _with_checkpoint(OpenedModel(model, source, kind, path=path, notes=notes, extras=dict(checkpoint.extras)), checkpoint)
    if not checkpoint.tensors:
        raise SourceError(f"{path}: holds no tensors")
    kind = "sharded" if sniffed.kind == "index" else "state_dict"
    model, build_notes = build_module(checkpoint, kind, part(state, READ_SHARE, 1.0))
    build_notes += [note] if (note := shard_note(path)) else []
    build_notes += [note] if (note := quantized_note(checkpoint.tensors)) else []
    opened = OpenedModel(
        model,
        source,
        kind,
        forward_unavailable=NO_FORWARD,
        path=path,
        notes=checkpoint.notes + build_notes,
        extras=dict(checkpoint.extras),
        loader=checkpoint.loader,
    )
    return _with_checkpoint(opened, checkpoint)
