"""torch.distributed.checkpoint folders written by a real two-process gloo group."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from paramscope.core.errors import SourceError
from paramscope.core.files.dcp import is_dcp_folder, list_entries, load_tensors, read_metadata

WRITER = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    import torch.multiprocessing as mp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    def work(rank, world, path, port):
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = port
        dist.init_process_group("gloo", rank=rank, world_size=world)
        mesh = init_device_mesh("cpu", (world,))
        weight = torch.arange(24, dtype=torch.float32).reshape(6, 4)
        state = {
            "layer.weight": distribute_tensor(weight, mesh, [Shard(0)]),
            "layer.bias": distribute_tensor(torch.ones(4), mesh, [Replicate()]),
            "step": torch.tensor(7),
            "note": "trained",
        }
        dcp.save(state, checkpoint_id=path)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(work, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
    """
)


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture(scope="module")
def dcp_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dcp")
    script = root / "writer.py"
    script.write_text(WRITER)
    folder = root / "checkpoint"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(folder), _free_port()], check=True, timeout=240, env=env)
    return folder


def test_sharded_folder_is_read_from_its_metadata(dcp_folder: Path) -> None:
    assert is_dcp_folder(dcp_folder)
    assert len(list(dcp_folder.glob("*.distcp"))) == 2  # written by two ranks
    entries = {e.key: e for e in list_entries(read_metadata(dcp_folder))}
    assert entries["layer.weight"].shape == (6, 4) and entries["layer.weight"].chunks == 2
    assert entries["step"].dtype == torch.int64
    assert not entries["note"].is_tensor


def test_tensors_merge_every_shard(dcp_folder: Path) -> None:
    metadata = read_metadata(dcp_folder)
    entries = [e for e in list_entries(metadata) if e.key == "layer.weight"]
    tensors = load_tensors(dcp_folder, entries, metadata)
    assert list(tensors) == ["layer.weight"]  # only what was asked for
    assert torch.equal(tensors["layer.weight"], torch.arange(24, dtype=torch.float32).reshape(6, 4))


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # runs os.system on unpickling
        return (os.system, (f"touch {self.path}",))


def test_malicious_metadata_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(SourceError, match="nothing was run"):
        read_metadata(folder)
    assert not marker.exists()


def test_garbage_metadata_gives_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / ".metadata").write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(SourceError) as info:
        read_metadata(folder)
    assert str(folder / ".metadata") in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["no chunks", "negative size", "no dtype"])
def test_metadata_with_broken_entries_gives_one_line_error(
    dcp_folder: Path, tmp_path: Path, damage: str
) -> None:
    """Found by the fuzz test: objects the metadata builds can lack what list_entries reads."""
    import shutil

    metadata = pickle.loads((dcp_folder / ".metadata").read_bytes())  # our own folder: plain pickle
    item = next(i for i in metadata.state_dict_metadata.values() if hasattr(i, "chunks"))
    if damage == "no chunks":
        del item.__dict__["chunks"]
    elif damage == "negative size":
        item.__dict__["size"] = torch.Size([-3])
    else:
        item.properties.__dict__["dtype"] = "float32"
    folder = tmp_path / "ckpt"
    shutil.copytree(dcp_folder, folder)
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(SourceError, match="(damaged|not plain) checkpoint metadata") as info:
        read_metadata(folder)
    assert str(folder / ".metadata") in str(info.value) and "\n" not in str(info.value)


def test_folder_opens_lazily_and_exports_consolidated(dcp_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from paramscope.cli import main
    from paramscope.core.edit.save import save_session
    from paramscope.core.edit.session import Session
    from paramscope.core.sources.sources import open_source

    opened = open_source(str(dcp_folder))
    assert opened.kind == "distributed_checkpoint" and not opened.can_forward
    assert opened.model.layer.weight.device.type == "meta"  # nothing read yet
    session = Session(opened)
    assert session.report.parameters["layer.weight"].shape == (6, 4)
    summary = session.ensure_summary("layer.weight")
    assert summary.stats.max == 23.0 and summary.stats.has_data
    assert opened.model.layer.weight.device.type == "meta"  # values were not kept in the model
    assert opened.extras["note"] == "pickled object, not loaded"

    out = tmp_path / "consolidated.pt"
    save_session(session, out)
    merged = torch.load(out, weights_only=True)
    assert torch.equal(merged["layer.weight"], torch.arange(24, dtype=torch.float32).reshape(6, 4))
    assert merged["step"].item() == 7

    st = tmp_path / "consolidated.safetensors"
    assert main(["export", str(dcp_folder), "-o", str(st)]) == 0
    assert torch.equal(load_file(str(st))["layer.bias"], torch.ones(4))


def test_a_file_of_the_folder_opens_the_folder(dcp_folder: Path) -> None:
    """A file dialog picks files: .metadata alone is a plain pickle that asked for trust (and so
    led a user to allow code), a .distcp file held no model. Each opens the folder, through
    its checked reader."""
    from paramscope.core.files import read_checkpoint
    from paramscope.core.sources.sources import open_source

    for picked in [dcp_folder / ".metadata", *sorted(dcp_folder.glob("*.distcp"))]:
        opened = open_source(str(picked))
        assert set(opened.model.state_dict()) >= {"layer.weight", "layer.bias"}, picked
        assert torch.equal(read_checkpoint(picked).tensors["layer.weight"], torch.arange(24.0).reshape(6, 4))
