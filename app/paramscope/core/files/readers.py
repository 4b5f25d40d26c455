"""One reader per format, chosen by content; :func:`open_file` is the registered opener."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from paramscope.core.errors import ParamscopeError, SourceError
from paramscope.core.files.archives import load_exported, load_torchscript
from paramscope.core.files.safetensors_io import read_safetensors
from paramscope.core.files.safety import bad_file, first_line
from paramscope.core.files.sharded import read_sharded
from paramscope.core.files.sniff import sniff
from paramscope.core.files.statedict import NO_FORWARD, Checkpoint, build_module, split_checkpoint
from paramscope.core.files.torch_io import load_torch_file
from paramscope.core.sources import OpenedModel

_TORCH_KINDS = ("torch_zip", "torch_legacy", "pickle", "tar")


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


def read_checkpoint(path: Path, trust: bool = False) -> Checkpoint:
    """The tensors (and extras) of a state_dict file: torch, safetensors or a sharded index.

    Whole modules (trusted pickles, TorchScript, .pt2) come back as ``Checkpoint.module``.

    Raises:
        SourceError: one line naming the file and the problem.
        UntrustedFileError: the file needs code to run and ``trust`` is False.
    """
    path = Path(path)
    with reading(path):
        return _read_checkpoint(path, trust)


def _read_checkpoint(path: Path, trust: bool) -> Checkpoint:
    sniffed = sniff(path)
    if sniffed.kind == "safetensors":
        return read_safetensors(path)
    if sniffed.kind == "index":
        return read_sharded(path, trust)
    if sniffed.kind == "torchscript":
        return Checkpoint({}, module=load_torchscript(sniffed, trust))
    if sniffed.kind == "pt2":
        return Checkpoint({}, module=load_exported(sniffed, trust))
    if sniffed.kind == "tar" and not trust:
        from paramscope.core.files.safety import UntrustedFileError

        raise UntrustedFileError(path, "torch's oldest (tar) format is read with full unpickling", "it is a tar-format torch file")
    if sniffed.kind in _TORCH_KINDS:
        obj = load_torch_file(path, trust, sniffed)
        try:
            return split_checkpoint(obj, str(path))
        except ValueError as exc:
            raise bad_file(path, str(exc)) from None
    raise bad_file(path, f"unsupported format {sniffed.kind}")  # pragma: no cover


def state_dict_of(checkpoint: Checkpoint) -> dict:
    """Every name -> tensor, aliases included, whether the file held tensors or a module."""
    if checkpoint.module is not None:
        return dict(checkpoint.module.state_dict())
    return checkpoint.all_tensors()


def _folder_target(path: Path) -> Path | None:
    """A folder opens through its single ``*.index.json``; DCP folders are left to their opener."""
    try:
        from paramscope.core.dcp import is_dcp_folder

        if is_dcp_folder(path):
            return None
    except ImportError:  # pragma: no cover
        pass
    indexes = sorted(path.glob("*.index.json"))
    if len(indexes) == 1:
        return indexes[0]
    hint = "it holds several *.index.json; open one of them" if indexes else "open a weights file or the *.index.json inside"
    raise bad_file(path, f"is a folder, not a model file ({hint})")


def open_file(path: Path, trust: bool) -> OpenedModel | None:
    """Open a file or folder source (what :func:`paramscope.core.sources.open_source` calls)."""
    path = Path(path)
    with reading(path):
        return _open_file(path, trust)


def _open_file(path: Path, trust: bool) -> OpenedModel | None:
    if path.is_dir():
        from paramscope.core.dcp import is_dcp_folder, open_dcp

        if is_dcp_folder(path):
            return open_dcp(path)
        index = _folder_target(path)
        if index is None:
            return None
        path = index
    sniffed = sniff(path)
    checkpoint = read_checkpoint(path, trust)
    source = str(path)
    if checkpoint.module is not None:
        kind = {"torchscript": "torchscript", "pt2": "export"}.get(sniffed.kind, "pickled_module")
        model: nn.Module = checkpoint.module
        notes = list(checkpoint.notes)
        if kind == "pickled_module":
            notes.append("opened with full unpickling because you trusted this file")
        return OpenedModel(model, source, kind, path=path, notes=notes, extras=dict(checkpoint.extras))
    if not checkpoint.tensors:
        raise SourceError(f"{path}: holds no tensors")
    model, build_notes = build_module(checkpoint, "sharded" if sniffed.kind == "index" else "state_dict")
    kind = "sharded" if sniffed.kind == "index" else "state_dict"
    return OpenedModel(
        model,
        source,
        kind,
        forward_unavailable=NO_FORWARD,
        path=path,
        notes=checkpoint.notes + build_notes,
        extras=dict(checkpoint.extras),
    )
