"""A plain zip checkpoint built from its scan equals what torch.load(weights_only=True) returns:
types, values, strides, sharing of storages and objects; anything else is left to torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from paramscope.core.files import torch_io
from paramscope.core.files.sniff import sniff
from paramscope.core.files.torch_plain import build_plain


def _built(path: Path) -> Any:
    sniffed = sniff(path)
    scan, records = torch_io._check_zip(sniffed)
    return build_plain(path, scan, records, sniffed.prefix)


def _flatten(value: Any, out: list[Any]) -> None:
    """Types, values and the identity pattern (objects and storages) of a loaded checkpoint."""
    out.append(type(value))
    if isinstance(value, torch.Tensor):
        out += [value.dtype, value.shape, value.stride(), value.storage_offset(), value.requires_grad]
        out += [type(value._backward_hooks), value.detach().reshape(-1).tolist()]
        out.append(("storage", value.untyped_storage().data_ptr(), value.untyped_storage().nbytes()))
        out.append(("object", id(value)))
    elif isinstance(value, dict):
        out += [list(value.keys()), getattr(value, "__dict__", None), ("object", id(value))]
        for item in value.values():
            _flatten(item, out)
    elif isinstance(value, list | tuple):
        out.append(len(value))
        for item in value:
            _flatten(item, out)
    else:
        out.append(value)


def _pattern(value: Any) -> list[Any]:
    flat: list[Any] = []
    _flatten(value, flat)
    seen: dict[Any, int] = {}
    return [("same", seen.setdefault(v, len(seen))) if isinstance(v, tuple) and v[:1] in (("storage",), ("object",)) else v for v in flat]


def _cases() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    x = torch.arange(24.0).reshape(4, 6)
    return {
        "state_dict": model.state_dict(),  # an OrderedDict with _metadata
        "views": {"a": x, "b": x[:, 1:3], "c": x.t(), "d": x, "e": torch.empty(0), "f": torch.empty(0), "g": torch.zeros(2, 0)},
        "dtypes": {
            "bf16": torch.randn(3).bfloat16(), "bool": torch.tensor([True, False]), "i64": torch.arange(5),
            "f16": torch.randn(2).half(), "c64": torch.randn(2, dtype=torch.complex64), "u8": torch.arange(3, dtype=torch.uint8),
            "scalar": torch.tensor(3.5),
        },
        "parameters": {"p": torch.nn.Parameter(torch.randn(2)), "q": torch.nn.Parameter(torch.ones(3), requires_grad=False)},
        "training": {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3, "notes": [1, 2.5, None, (1, "a")]},
        "list": [x, x[1], {1: x}],
        "tensor": x,
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_a_plain_checkpoint_is_built_as_torch_loads_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.pt"
    torch.save(_cases()[name], path)
    built = _built(path)
    assert built is not None
    assert _pattern(built) == _pattern(torch.load(path, map_location="cpu", weights_only=True))


@pytest.mark.parametrize(
    "value",
    [
        {"size": torch.Size([2])},  # a global beyond containers and tensors
        {"conj": torch.randn(2, dtype=torch.complex64).conj()},  # metadata torch's loader sets
        {"f8": torch.zeros(2, dtype=torch.float8_e4m3fn)},
        {"set": {1, 2}},
    ],
)
def test_anything_else_is_left_to_torch(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "other.pt"
    torch.save(value, path)
    assert _built(path) is None
    loaded = torch_io.load_torch_file(path)
    assert list(loaded) == list(value)


def test_a_storage_cut_short_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "short.pt"
    torch.save({"a": torch.arange(1000.0)}, path)
    data = path.read_bytes()
    start = data.index(b"short/data/0") + len(b"short/data/0")
    path.write_bytes(data[: start + 200])  # a zip directory is gone too: refused before the build
    with pytest.raises(Exception, match="short.pt"):
        torch_io.load_torch_file(path)


def _scan_both(raw: bytes) -> list[Any]:
    """The inline loop over bytes and the stock loop over a stream: result or error type."""
    import io

    from paramscope.core.files.pickle_scan import PickleScan, _ScanUnpickler

    out = []
    for inline in (True, False):
        scan = PickleScan()
        unpickler = _ScanUnpickler(io.BytesIO(b"" if inline else raw), scan, None, 0)
        try:
            top = unpickler.load_bytes(raw) if inline else unpickler.load()
        except Exception as exc:  # noqa: BLE001  (the kind of failure is what is compared)
            out.append(type(exc))
            continue
        flat: list[Any] = []
        _flatten_scan(top, flat)
        out.append((scan.globals, sorted((k, d.type_name, d.numel) for k, d in scan.storages.items()), flat))
    return out


def _flatten_scan(node: Any, out: list[Any]) -> None:
    from paramscope.core.files.pickle_scan import _Inert

    out.append(type(node).__name__)
    if isinstance(node, type):  # each scan makes its own stand-in classes
        out.append(getattr(node, "_qualname", node))
    elif isinstance(node, _Inert):
        out.append(node._qualname)
        _flatten_scan(node.args, out)
        _flatten_scan(node.__dict__.get("items"), out)
    elif isinstance(node, dict):
        for key, value in node.items():
            _flatten_scan(key, out)
            _flatten_scan(value, out)
    elif isinstance(node, list | tuple):
        for value in node:
            _flatten_scan(value, out)
    else:
        out.append(node)


def test_the_inline_scan_reads_pickles_as_the_stock_loop() -> None:
    import io
    import pickle
    import zipfile

    buffer = io.BytesIO()
    torch.save(_cases()["training"], buffer)
    with zipfile.ZipFile(buffer) as archive:
        checkpoint = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    samples = [checkpoint, pickle.dumps({"a": [1, (2, 3), True, None, "x" * 300]}, protocol=2)]
    samples += [checkpoint[:n] for n in (1, 50, len(checkpoint) // 2, len(checkpoint) - 1)]  # cut short
    samples += [b"\x80\x02h\x07.", b"\x80\x02t.", b"\x80\x02N\x85\x86.", b"\x80\x02\xff.", b"\x80\x02(K\x01K\x02t."]
    for raw in samples:
        inline, stock = _scan_both(raw)
        assert inline == stock, raw[:40]
