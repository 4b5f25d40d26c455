"""Export: .pt and .safetensors round trips with ties, exact non-float data, atomic writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from paramscope.core.edit.commands import TensorEditCommand
from paramscope.core.edit.save import save_session
from paramscope.core.edit.session import Session
from paramscope.core.errors import Cancelled
from paramscope.core.files import atomic
from paramscope.core.files import export as export_module
from paramscope.core.files.export import ExportError, export_model, write_state_dict
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import OpenedModel, open_source
from paramscope.core.tasks import TaskState

TIED = {"tiny_lm": ("embed.weight", "head.weight"), "shared": ("0.weight", "1.weight")}


def _assert_equal_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert torch.equal(got[name], tensor), name


@pytest.mark.parametrize("demo", list(TIED))
def test_pt_round_trip_keeps_ties(tmp_path: Path, demo: str) -> None:
    model = build_demo(demo)
    path = tmp_path / "out.pt"
    result = export_model(model, path)
    kept, alias = sorted(TIED[demo])
    assert result.aliases == {alias: kept}
    plain = torch.load(path, weights_only=True)
    _assert_equal_state(plain, model.state_dict())
    assert plain[kept].data_ptr() == plain[alias].data_ptr()  # torch.save kept one storage
    fresh = build_demo(demo, seed=1)
    fresh.load_state_dict(plain)
    _assert_equal_state(fresh.state_dict(), model.state_dict())
    reopened = open_source(str(path)).model
    assert reopened.get_parameter(kept) is reopened.get_parameter(alias)


@pytest.mark.parametrize("demo", list(TIED))
def test_safetensors_round_trip_stores_shared_once(tmp_path: Path, demo: str) -> None:
    model = build_demo(demo)
    path = tmp_path / "out.safetensors"
    export_model(model, path)
    kept, alias = sorted(TIED[demo])
    plain = safetensors.torch.load_file(str(path))
    assert kept in plain and alias not in plain  # stored once
    with safetensors.safe_open(str(path), "pt") as handle:
        assert handle.metadata()[alias] == kept  # save_model's alias form
    expected = {k: v for k, v in model.state_dict().items() if k != alias}
    _assert_equal_state(plain, expected)
    fresh = build_demo(demo, seed=1)
    missing, unexpected = safetensors.torch.load_model(fresh, str(path))
    assert not missing and not unexpected
    _assert_equal_state(fresh.state_dict(), model.state_dict())
    reopened = open_source(str(path)).model
    assert reopened.get_parameter(kept) is reopened.get_parameter(alias)


def test_same_file_as_safetensors_save_model_writes(tmp_path: Path) -> None:
    model = build_demo("tiny_lm")
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    export_model(model, ours)
    safetensors.torch.save_model(model, str(theirs))
    with safetensors.safe_open(str(ours), "pt") as a, safetensors.safe_open(str(theirs), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert {k: v for k, v in a.metadata().items() if k != "format"} == b.metadata()


class _TiedOutOfOrder(nn.Module):
    """A tie whose first name in the state_dict (``z.weight``) is not the first in sorted order."""

    def __init__(self) -> None:
        super().__init__()
        self.z = nn.Linear(3, 3)
        self.a = nn.Linear(3, 3)
        self.a.weight = self.z.weight


def test_the_stored_name_of_a_tie_is_save_models_choice(tmp_path: Path) -> None:
    model = _TiedOutOfOrder()
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    export_model(model, ours)
    safetensors.torch.save_model(model, str(theirs))
    with safetensors.safe_open(str(ours), "pt") as a, safetensors.safe_open(str(theirs), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys()) == ["a.bias", "a.weight", "z.bias"]
        assert a.metadata()["z.weight"] == b.metadata()["z.weight"] == "a.weight"


class Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, float("nan"), float("inf"), -0.0, 1e-45]))
        self.fp16 = nn.Parameter(torch.randn(3, dtype=torch.float16))
        self.bf16 = nn.Parameter(torch.randn(3, dtype=torch.bfloat16))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("count", torch.tensor(2**40 + 1, dtype=torch.int64))
        self.register_buffer("small", torch.tensor([-3, 7], dtype=torch.int8))
        self.register_buffer("scratch", torch.ones(2), persistent=False)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_non_float_and_odd_values_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    model = Odd()
    path = tmp_path / f"odd{suffix}"
    export_model(model, path)
    reopened = open_source(str(path)).model
    got = reopened.state_dict()
    assert "scratch" not in got
    for name, tensor in model.state_dict().items():
        assert got[name].dtype == tensor.dtype
        assert torch.equal(
            got[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)
        ), name
    assert isinstance(reopened.get_buffer("mask"), torch.Tensor)
    assert torch.signbit(got["weight"][3])  # -0.0 stays negative zero


def test_a_dtype_safetensors_lacks_is_refused_in_one_line(tmp_path: Path) -> None:
    """complex128 (no safetensors type) failed as "unexpected error: KeyError: torch.complex128"."""
    model = nn.Module()
    model.register_buffer("spectrum", torch.ones(3, dtype=torch.complex128))
    model.weight = nn.Parameter(torch.ones(2))
    target = tmp_path / "out.safetensors"
    with pytest.raises(ExportError) as info:
        export_model(model, target)
    assert str(info.value) == (
        f"{target}: cannot write: the safetensors format has no complex128 type (spectrum): export to .pt instead"
    )
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    export_model(model, tmp_path / "out.pt")  # .pt holds it
    assert open_source(str(tmp_path / "out.pt")).model.state_dict()["spectrum"].dtype == torch.complex128


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_names_that_clashed_on_opening_are_written_back_as_the_file_had_them(tmp_path: Path, suffix: str) -> None:
    """A tensor named like a module (``c`` and ``c.0.weight``), with an empty part (``a..b``) or
    like a Module attribute (``training``) is stored renamed (``c_``, ``a.__.b``, ``training_``):
    its export wrote the renamed keys, which no longer load into the model the file came from."""
    gen = torch.Generator().manual_seed(0)
    names = ["c", "c.0.weight", "a..b", "training", "forward.weight", "", "ok.weight"]
    state = {name: torch.randn(2, 2, generator=gen) for name in names}
    source = tmp_path / f"clash{suffix}"
    if suffix == ".pt":
        torch.save(state, source)
    else:
        safetensors.torch.save_file(state, str(source))
    opened = open_source(str(source))
    assert "training" not in opened.model.state_dict() and "training_" in opened.model.state_dict()
    target = tmp_path / f"out{suffix}"
    export_model(opened.model, target)
    written = torch.load(target) if suffix == ".pt" else safetensors.torch.load_file(str(target))
    assert sorted(written) == sorted(names)
    for name in names:
        assert torch.equal(written[name], state[name]), name


def _awkward_state() -> dict[str, torch.Tensor]:
    """Layouts a direct writer can get wrong: ties, views, odd sizes, every common dtype."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    return {
        "tied.a": base,
        "tied.b": base,  # the same tensor twice: stored once, stays tied
        "transposed": base.t(),  # a non-contiguous view of the same storage
        "rows": base[1:4],  # an overlapping slice: stored as a copy
        "strided": torch.arange(20, dtype=torch.int64)[::3],
        "odd": torch.randn(3, generator=gen),  # 12 bytes: not a whole number of int64 words
        "bf16": torch.randn(7, generator=gen).to(torch.bfloat16),
        "fp16": torch.randn(2, 3, generator=gen).to(torch.float16),
        "empty": torch.empty(0, 4),
        "scalar": torch.tensor(3.5),
        "int_scalar": torch.tensor(-7, dtype=torch.int8),
        "mask": torch.tensor([True, False, True]),
        "u16": torch.tensor([1, 65535], dtype=torch.uint16),
        "f8": torch.tensor([0.5, -2.0]).to(torch.float8_e4m3fn),
        "complex": torch.randn(3, dtype=torch.complex64, generator=gen),
        "f64": torch.randn(2, generator=gen, dtype=torch.float64),
    }


def _assert_same_bits(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, name
    flat = [t.contiguous().reshape(-1).view(torch.uint8) for t in (got, want)]
    assert torch.equal(*flat), name


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_awkward_layouts_load_with_the_libraries_exactly(tmp_path: Path, suffix: str) -> None:
    state = _awkward_state()
    path = tmp_path / f"awkward{suffix}"
    result = write_state_dict(state, path)
    assert result.aliases == {"tied.b": "tied.a"}
    if suffix == ".pt":
        got = torch.load(path, weights_only=True)
        assert got["tied.a"].data_ptr() == got["tied.b"].data_ptr()
    else:
        got = safetensors.torch.load_file(str(path))
        assert "tied.b" not in got
        with safetensors.safe_open(str(path), "pt") as handle:
            assert handle.metadata()["tied.b"] == "tied.a"
            got["tied.b"] = handle.get_tensor("tied.a")
    assert sorted(got) == sorted(state)
    for name, tensor in state.items():
        _assert_same_bits(got[name], tensor, name)


def test_read_back_comparison_is_bitwise() -> None:
    same = export_module._same_bits
    x = torch.randn(5, 3)
    assert same(x, x.clone()) and same(x.t(), x.t().contiguous())
    assert same(torch.empty(0, 2), torch.empty(0, 2)) and same(torch.tensor(1.0), torch.tensor(1.0))
    assert not same(torch.tensor([0.0]), torch.tensor([-0.0]))  # equal values, other bits
    nan = torch.tensor([float("nan")])
    assert same(nan, nan.clone())  # NaN != NaN as values, yet the same bits
    y = x.clone()
    y.view(-1).view(torch.uint8)[-1] ^= 1  # the very last byte
    assert not same(x, y)
    assert not same(x, x.double()) and not same(x, x.reshape(3, 5))
    assert not same(torch.zeros(3), torch.zeros(3, dtype=torch.int32))  # same bytes, other dtype
    odd = torch.arange(7, dtype=torch.int8)
    assert same(odd, odd.clone()) and not same(odd, odd.flip(0))


def _corrupt_on_disk(monkeypatch: pytest.MonkeyPatch, tensor: torch.Tensor) -> None:
    """Flip one bit of ``tensor``'s bytes in the written file before it is read back."""
    real = export_module._read_back
    needle = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

    def corrupted(tmp: Path, fmt: str):
        blob = bytearray(tmp.read_bytes())
        at = blob.find(needle)
        assert at >= 0
        blob[at + len(needle) // 2] ^= 0x10
        tmp.write_bytes(bytes(blob))
        return real(tmp, fmt)

    monkeypatch.setattr(export_module, "_read_back", corrupted)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_bytes_damaged_on_disk_are_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    export_model(build_demo("mlp"), path)
    before = path.read_bytes()
    model = build_demo("mlp", seed=4)
    _corrupt_on_disk(monkeypatch, model.state_dict()["2.weight"])
    with pytest.raises(ExportError, match=r"read-back check failed: 2\.weight differs"):
        export_model(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    real = export_module._read_back

    def truncated(tmp: Path, fmt: str):
        with open(tmp, "r+b") as handle:
            handle.truncate(tmp.stat().st_size - 10)
        return real(tmp, fmt)

    monkeypatch.setattr(export_module, "_read_back", truncated)
    path = tmp_path / f"model{suffix}"
    with pytest.raises(ExportError, match="read-back check failed") as info:
        export_model(build_demo("mlp"), path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_subtree_export_uses_relative_names(tmp_path: Path) -> None:
    model = build_demo("cnn")
    path = tmp_path / "features.safetensors"
    export_model(model, path, module="features")
    plain = safetensors.torch.load_file(str(path))
    assert sorted(plain) == sorted(model.features.state_dict())
    fresh = build_demo("cnn", seed=2).features
    fresh.load_state_dict(plain)
    with pytest.raises(ExportError, match="no such module"):
        export_model(model, tmp_path / "x.pt", module="nope")


def _fail_midway(real):
    def writer(obj, target, *args, **kwargs):
        if hasattr(target, "write"):
            target.write(b"partial bytes")
        else:
            Path(target).write_bytes(b"partial bytes")
        raise OSError(28, "No space left on device")

    return writer


def _disk_fills_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files are written through UnbufferedFile: the disk fills up after the first bytes."""
    real = atomic.UnbufferedFile._write_some

    def write_some(self, view):
        if self.position > 100:
            raise OSError(28, "No space left on device")
        return real(self, view[:7])  # short writes, as the system may make them

    monkeypatch.setattr(atomic.UnbufferedFile, "_write_some", write_some)


def _library_fails(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    if suffix == ".pt":
        monkeypatch.setattr(torch, "save", _fail_midway(torch.save))
    else:  # dtypes we do not write ourselves go through safetensors' writer
        monkeypatch.setattr(
            safetensors.torch, "save_file", _fail_midway(safetensors.torch.save_file)
        )


def _with_rare_dtype(model: nn.Module) -> nn.Module:
    model.register_buffer("scale", torch.ones(4).to(torch.float8_e8m0fnu))
    return model


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("failure", ["disk full", "library"])
def test_failure_midway_leaves_old_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, failure: str
) -> None:
    path = tmp_path / f"model{suffix}"
    export_model(build_demo("mlp"), path)
    before = path.read_bytes()
    new = build_demo("mlp", seed=9)
    if failure == "disk full":
        _disk_fills_up(monkeypatch)
    else:
        _library_fails(monkeypatch, suffix)
        new = _with_rare_dtype(new)
    with pytest.raises(ExportError, match="No space left") as info:
        export_model(new, path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_failure_with_no_old_target_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "save", _fail_midway(torch.save))
    with pytest.raises(ExportError):
        export_model(build_demo("mlp"), tmp_path / "new.pt")
    assert list(tmp_path.iterdir()) == []


def test_read_back_mismatch_and_interrupt_leave_old_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pt"
    export_model(build_demo("mlp"), path)
    before = path.read_bytes()
    real = export_module._read_back

    def corrupted(tmp, fmt):
        state = real(tmp, fmt)
        state["0.weight"] = state["0.weight"] + 1
        return state

    monkeypatch.setattr(export_module, "_read_back", corrupted)
    with pytest.raises(ExportError, match="read-back check failed: 0.weight"):
        export_model(build_demo("mlp", seed=4), path)
    assert path.read_bytes() == before

    def interrupted(tmp, fmt):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "_read_back", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(build_demo("mlp", seed=4), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_cancel_leaves_old_target(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    export_model(build_demo("mlp"), path)
    before = path.read_bytes()
    state = TaskState(on_progress=lambda fraction, _: state.cancel() if fraction >= 0.5 else None)
    with pytest.raises(Cancelled):
        export_model(build_demo("mlp", seed=5), path, state=state)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_progress_reaches_the_end(tmp_path: Path) -> None:
    seen: list[float] = []
    export_model(
        build_demo("mlp"),
        tmp_path / "m.pt",
        state=TaskState(on_progress=lambda f, _: seen.append(f)),
    )
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_bad_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_demo("mlp")
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(model, tmp_path / "m.txt")
    with pytest.raises(ExportError, match="is a folder"):
        (tmp_path / "dir.pt").mkdir()
        export_model(model, tmp_path / "dir.pt")
    with pytest.raises(ExportError, match="does not exist"):
        export_model(model, tmp_path / "nowhere" / "m.pt")
    with pytest.raises(ExportError, match="reserved"):
        write_state_dict({"__metadata__": torch.ones(1)}, tmp_path / "m.safetensors")

    def no_temp(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", no_temp)
    with pytest.raises(ExportError, match="Permission denied"):
        export_model(model, tmp_path / "m.pt")


def test_existing_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    export_model(build_demo("mlp"), path)
    path.chmod(0o640)
    export_model(build_demo("mlp", seed=3), path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_save_session_marks_clean(tmp_path: Path) -> None:
    session = Session(OpenedModel(build_demo("mlp"), "demo:mlp", "demo"))
    weight = session.tensor("0.weight")
    session.execute(TensorEditCommand("zero", [("0.weight", weight)], lambda: weight.zero_()))
    assert session.modified
    save_session(session, tmp_path / "m.safetensors")
    assert not session.modified
    reopened = open_source(str(tmp_path / "m.safetensors")).model
    assert torch.count_nonzero(reopened.get_parameter("0.weight")) == 0


def test_export_over_the_mmap_loaded_file(tmp_path: Path) -> None:
    """torch.save over a file the model was mmap-loaded from kills the process with SIGBUS."""
    path = tmp_path / "lm.pt"
    torch.save(build_demo("tiny_lm").state_dict(), path)
    script = textwrap.dedent(
        f"""
        import torch
        from paramscope.core.sources.sources import open_source
        from paramscope.core.files.export import export_model
        opened = open_source({str(path)!r})
        with torch.no_grad():
            opened.model.get_parameter("pos").add_(1.0)
        export_model(opened.model, {str(path)!r})
        again = open_source({str(path)!r}).model
        assert torch.equal(again.get_parameter("pos"), opened.model.get_parameter("pos"))
        assert torch.equal(again.get_parameter("blocks.layers.1.linear2.weight"), opened.model.get_parameter("blocks.layers.1.linear2.weight"))
        print("survived")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "survived" in done.stdout


class _Wide(nn.Module):
    """Tensors of one shape that can be mixed up, a tie, and a weight of a size of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(512, 64)
        self.body = nn.Linear(64, 512)  # the embedding's shape: the two can be mixed up
        self.head = nn.Linear(64, 512, bias=False)
        self.head.weight = self.embed.weight
        self.odd = nn.Linear(100, 700)  # a size of its own


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_bytes_changed_on_their_way_to_the_file_are_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    real = atomic.UnbufferedFile._write_some
    odd_bytes = 700 * 100 * 4

    def flip_in_odd_weight(self: atomic.UnbufferedFile, view: memoryview) -> int:
        if len(view) == odd_bytes:
            damaged = bytearray(view)
            damaged[12345] ^= 0x04
            return real(self, memoryview(damaged))
        return real(self, view)

    monkeypatch.setattr(atomic.UnbufferedFile, "_write_some", flip_in_odd_weight)
    path = tmp_path / f"wide{suffix}"
    with pytest.raises(ExportError, match=r"read-back check failed: odd\.weight differs"):
        export_model(_Wide(), path)
    assert list(tmp_path.iterdir()) == []


def test_a_header_pointing_at_another_tensors_bytes_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tensor's bytes are in the file, yet the header gives embed's place to body's bytes."""
    from paramscope.core.files import safetensors_write

    real = safetensors_write.safetensors_layout

    def mixed_up(stored, metadata):
        head, tensors = real(stored, metadata)
        names = [name for name in stored if stored[name] is not None]
        order = sorted(names, key=lambda n: (-stored[n].element_size(), n))
        i, j = order.index("body.weight"), order.index("embed.weight")
        tensors[i], tensors[j] = tensors[j], tensors[i]
        return head, tensors

    monkeypatch.setattr(safetensors_write, "safetensors_layout", mixed_up)
    with pytest.raises(ExportError, match=r"(body|embed)\.weight differs from the model"):
        export_model(_Wide(), tmp_path / "wide.safetensors")


def test_a_pickle_naming_another_tensors_storage_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.save

    def mixed_up(state, target, *args, **kwargs):
        state = dict(state)
        state["embed.weight"], state["body.weight"] = state["body.weight"], state["embed.weight"]
        return real(state, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", mixed_up)
    with pytest.raises(ExportError, match=r"(body|embed)\.weight differs from the model"):
        export_model(_Wide(), tmp_path / "wide.pt")


def _tie_lost_in_writing(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """A writer that stores the tied head as a second copy of the embedding's values."""
    if suffix == ".pt":
        real_save = torch.save

        def two_copies(state, target, *args, **kwargs):
            state = dict(state)
            state["head.weight"] = state["head.weight"].clone()
            return real_save(state, target, *args, **kwargs)

        monkeypatch.setattr(torch, "save", two_copies)
    else:
        from paramscope.core.files import safetensors_write

        # every name stored as a tensor of its own, no alias in the metadata
        monkeypatch.setattr(safetensors_write, "dedupe", lambda state: (dict(state), {}))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_tie_lost_in_the_written_file_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """Same values, yet two tensors in the file: the verify after writing refuses it."""
    path = tmp_path / f"wide{suffix}"
    path.write_bytes(b"old")
    _tie_lost_in_writing(monkeypatch, suffix)
    with pytest.raises(ExportError, match=r"head\.weight is no longer tied to embed\.weight"):
        export_model(_Wide(), path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("sync", [False, True])
def test_waiting_for_the_disk_is_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    synced: list[Path] = []
    real = atomic._fsync_file
    monkeypatch.setattr(atomic, "_fsync_file", lambda tmp: (synced.append(tmp), real(tmp)))
    path = tmp_path / "m.safetensors"
    export_model(build_demo("mlp"), path, sync=sync)
    assert len(synced) == (1 if sync else 0)
    _assert_equal_state(open_source(str(path)).model.state_dict(), build_demo("mlp").state_dict())


def test_a_name_the_model_does_not_have_in_the_written_file_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.save

    def one_more(state, target, *args, **kwargs):
        return real({**state, "stray": torch.zeros(1)}, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", one_more)
    path = tmp_path / "m.pt"
    with pytest.raises(ExportError, match=r"1 name\(s\) not in the model, e.g. \['stray'\]"):
        export_model(build_demo("mlp"), path)
    assert list(tmp_path.iterdir()) == []


def test_saving_a_subtree_leaves_the_session_unsaved(tmp_path: Path) -> None:
    """Only a whole-model export saves the session's edits."""
    session = Session(OpenedModel(build_demo("mlp"), "demo:mlp", "demo"))
    weight = session.tensor("0.weight")
    session.execute(TensorEditCommand("zero", [("0.weight", weight)], lambda: weight.zero_()))
    assert session.modified
    save_session(session, tmp_path / "part.pt", module="0")
    assert session.modified
    save_session(session, tmp_path / "all.pt")
    assert not session.modified
