"""Opening reports its progress step by step and stops on cancel, wherever the work is.

A checkpoint of a million tiny tensors takes half a minute to open: the window shows how far it
is and its Stop must end the open within a fraction of that, not after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.core import tasks
from paramscope.core.edit.session import Session
from paramscope.core.errors import Cancelled
from paramscope.core.files.readers import READ_SHARE
from paramscope.core.sources.sources import open_source
from paramscope.core.tasks import TaskState

COUNT = 3 * tasks.STEP_STRIDE  # several reports per loop


def _many(tmp_path: Path, count: int = COUNT, name: str = "many.safetensors") -> Path:
    values = torch.randn(count, 6, generator=torch.Generator().manual_seed(0))
    tensors = {f"blocks.{k // 10}.layers.{k % 10}.weight": values[k].reshape(3, 2).clone() for k in range(count)}
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def _open(path: Path, state: TaskState) -> Session:
    """As the window opens a file: the source, then its report (the same two shares)."""
    opened = open_source(str(path), state=tasks.SliceState(state, 0.0, 0.6))
    return Session(opened, state=tasks.SliceState(state, 0.6, 1.0))


def test_opening_reports_each_step_in_order(tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []
    session = _open(_many(tmp_path), TaskState(lambda fraction, message: seen.append((fraction, message))))
    assert len(session.report.parameters) == COUNT
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] <= 1.0
    steps = list(dict.fromkeys(m for _, m in seen))
    assert steps == [
        "checking the header",
        "reading the tensors",
        "ordering the names",
        "making parameters",
        "building the module tree",
        "guessing module types",
        "describing parameters",
        "describing modules",
        "indexing the tensors",
    ]
    # within the loops, not only at their ends: a million tensors report every few thousand
    assert sum(m == "building the module tree" for _, m in seen) >= COUNT // tasks.STEP_STRIDE
    assert sum(m == "describing modules" for _, m in seen) >= COUNT // tasks.STEP_STRIDE


class _StopAt(TaskState):
    """Cancels itself when the open reaches ``step``'s second report (inside its loop)."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step, self.reached, self.after = step, 0, 0

    def progress(self, fraction: float, message: str = "") -> None:
        if self.cancelled:
            self.after += 1
        elif message == self.step:
            self.reached += 1
            if self.reached == 2:
                self.cancel()
        super().progress(fraction, message)


@pytest.mark.parametrize(
    "step",
    [
        "checking the header",
        "reading the tensors",
        "making parameters",
        "building the module tree",
        "guessing module types",
        "describing parameters",
        "describing modules",
    ],
)
def test_a_cancel_stops_the_open_inside_each_step(tmp_path: Path, step: str) -> None:
    """Cancelled, not turned into "cannot be read" by a reader's error handling, and no later
    step starts."""
    state = _StopAt(step)
    with pytest.raises(Cancelled):
        _open(_many(tmp_path), state)
    assert state.reached == 2 and state.after == 0


@pytest.mark.parametrize("step", ["scanning the pickle", "reading the tensors", "building the module tree"])
def test_a_torch_file_reports_its_scan_and_reads_and_stops_in_them(tmp_path: Path, step: str) -> None:
    """A ``.pt`` is scanned by our pure-Python pickle reader, then its storages read: a stop
    there is a stop, not "damaged" (the scan's errors all mean damaged bytes otherwise)."""
    path = tmp_path / "many.pt"
    torch.save({f"blocks.{k}.weight": torch.full((3,), float(k)) for k in range(COUNT)}, path)
    seen: list[tuple[float, str]] = []
    _open(path, TaskState(lambda fraction, message: seen.append((fraction, message))))
    assert [m for m in dict.fromkeys(m for _, m in seen)][:3] == ["scanning the pickle", "reading the tensors", "making parameters"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    state = _StopAt(step)
    with pytest.raises(Cancelled):
        _open(path, state)
    assert state.reached == 2 and state.after == 0


def test_a_sharded_checkpoint_reports_shard_by_shard_and_stops_between(tmp_path: Path) -> None:
    weight_map = {}
    for shard in range(1, 4):
        name = f"model-0000{shard}-of-00003.safetensors"
        tensors = {f"layers.{shard}.{k}.weight": torch.full((2,), float(k)) for k in range(5)}
        save_file(tensors, str(tmp_path / name))
        weight_map.update(dict.fromkeys(tensors, name))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    seen: list[tuple[float, str]] = []
    _open(index, TaskState(lambda fraction, message: seen.append((fraction, message))))
    reading = [(f, m) for f, m in seen if m.startswith("reading model-")]
    assert [m for _, m in reading] == [f"reading model-0000{n}-of-00003.safetensors" for n in (1, 2, 3)]
    share = 0.6 * READ_SHARE  # of the whole open: the source's share, of it reading's
    assert [round(f / share * 3) for f, _ in reading] == [0, 1, 2]  # a third of reading each

    state = _StopAt("reading model-00002-of-00003.safetensors")
    state.reached = 1  # stop at the second shard's first report
    with pytest.raises(Cancelled):
        _open(index, state)
    assert state.after == 0


def test_a_distributed_checkpoint_reports_its_metadata_and_stops_in_it(tmp_path: Path) -> None:
    """Its metadata is unpickled in pure Python with every entry checked (seconds for 100,000
    tensors): the open says how far it is, and a stop there is a stop, not "unreadable"."""
    import warnings

    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch.distributed not initialized: one process)
        dcp.save({f"layers.{k}.weight": torch.full((2,), float(k)) for k in range(3000)}, checkpoint_id=str(folder))
    seen: list[tuple[float, str]] = []
    session = _open(folder, TaskState(lambda fraction, message: seen.append((fraction, message))))
    assert len(session.report.parameters) == 3000
    reading = [f for f, m in seen if m == "reading the checkpoint's metadata"]
    assert len(reading) >= 2 and reading == sorted(reading) and 0 < reading[0] < reading[-1] < 0.6
    state = _StopAt("reading the checkpoint's metadata")
    with pytest.raises(Cancelled):
        _open(folder, state)
    assert state.reached == 2 and state.after == 0


def test_reading_weights_to_load_reports_and_stops(tmp_path: Path) -> None:
    """Load weights… and --weights read a whole file: it says how far, and stops when asked."""
    from paramscope.core.sources.weights import WeightsInputs, run_read_weights

    path = _many(tmp_path)
    model = open_source(str(path)).model
    seen: list[tuple[float, str]] = []
    tensors, report = run_read_weights(WeightsInputs(str(path), model), TaskState(lambda f, m: seen.append((f, m))))
    assert len(tensors) == COUNT and report.fits
    steps = list(dict.fromkeys(m for _, m in seen))
    assert steps[1:4] == ["checking the header", "reading the tensors", "ordering the names"]
    assert max(f for f, m in seen if m == "reading the tensors") < 0.8  # then "comparing with the model"
    state = _StopAt("checking the header")
    with pytest.raises(Cancelled):
        run_read_weights(WeightsInputs(str(path), model), state)
    assert state.after == 0

    seen.clear()  # --weights: the source's open, then the file's reading, in one bar
    opened = open_source(str(path), weights=str(path), state=TaskState(lambda f, m: seen.append((f, m))))
    assert "weights loaded from" in opened.notes[-1]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert max(f for f, m in seen if m == "building the module tree") <= 0.5  # the source: the first half
    assert any(f >= 0.5 for f, m in seen if m == "reading the tensors")  # the weights' file: the second
