"""NumPy weight files (numpy.savez .npz, one .npy) open as tensors equal to numpy's arrays, never
unpickle, and other frameworks' files are named in their refusal."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from paramscope.core.errors import SourceError
from paramscope.core.files.export import export_model
from paramscope.core.sources.sources import open_source


def _jax_style(path: Path, compressed: bool = False) -> dict[str, np.ndarray]:
    """Arrays as the original JAX ViT checkpoints hold them: '/'-separated names, kernels in
    several dtypes and layouts, beside integer and boolean arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel": np.asfortranarray(rng.standard_normal((4, 6)).astype(np.float32)),
        "Transformer/encoderblock_0/MlpBlock_3/Dense_0/bias": rng.standard_normal(6).astype(np.float16),
        "embedding/kernel": rng.standard_normal((2, 3)).astype(">f8"),  # big-endian
        "step": np.array(1000, dtype=np.int64),
        "mask": np.array([True, False, True]),
    }
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


@pytest.mark.parametrize("compressed", [False, True])
def test_an_npz_opens_with_numpys_values_and_slashes_as_levels(tmp_path: Path, compressed: bool) -> None:
    arrays = _jax_style(tmp_path / "vit.npz", compressed)
    opened = open_source(str(tmp_path / "vit.npz"))
    state = opened.model.state_dict()
    assert set(state) == {key.replace("/", ".") for key in arrays}
    for key, array in arrays.items():
        tensor = state[key.replace("/", ".")]
        assert tensor.shape == array.shape
        assert np.array_equal(tensor.numpy(), array.astype(array.dtype.newbyteorder("=")))
    assert state["embedding.kernel"].dtype == torch.float64 and state["Transformer.encoderblock_0.MlpBlock_3.Dense_0.bias"].dtype == torch.float16
    assert dict(opened.model.named_buffers()).keys() == {"step", "mask"}  # integers and booleans are buffers
    assert opened.model.get_submodule("Transformer.encoderblock_0.MlpBlock_3.Dense_0") is not None
    assert any("'/'" in note for note in opened.notes)


def test_an_npz_exports_to_safetensors_with_the_same_values(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    arrays = _jax_style(tmp_path / "vit.npz")
    opened = open_source(str(tmp_path / "vit.npz"))
    export_model(opened.model, tmp_path / "vit.safetensors")
    written = load_file(str(tmp_path / "vit.safetensors"))
    for key, array in arrays.items():
        assert np.array_equal(written[key.replace("/", ".")], array)


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    np.savez(tmp_path / "evil.npz", w=np.ones(3, np.float32), obj=np.array([Payload()], dtype=object))
    with pytest.raises(SourceError) as raised:
        open_source(str(tmp_path / "evil.npz"))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'evil.npz'}: ") and "never unpickles" in message and "\n" not in message
    assert not marker.exists()


def test_arrays_of_no_number_are_left_out_with_a_note(tmp_path: Path) -> None:
    np.savez(tmp_path / "mixed.npz", w=np.ones(3, np.float32), labels=np.array(["cat", "dog"]))
    opened = open_source(str(tmp_path / "mixed.npz"))
    assert list(opened.model.state_dict()) == ["w"]
    assert any("'labels' (<U3)" in note for note in opened.notes)
    np.savez(tmp_path / "words.npz", labels=np.array(["cat"]))
    with pytest.raises(SourceError, match="holds no numeric arrays"):
        open_source(str(tmp_path / "words.npz"))


def test_a_truncated_npz_is_one_line(tmp_path: Path) -> None:
    _jax_style(tmp_path / "vit.npz")
    data = (tmp_path / "vit.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2] + data[-200:])  # directory kept, data cut
    with pytest.raises(SourceError) as raised:
        open_source(str(tmp_path / "cut.npz"))
    assert str(raised.value).startswith(f"{tmp_path / 'cut.npz'}: ") and "\n" not in str(raised.value)


def test_one_npy_array_is_a_tensor_named_by_its_file(tmp_path: Path) -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "layer.0.weight.npy", values)
    opened = open_source(str(tmp_path / "layer.0.weight.npy"))
    assert np.array_equal(opened.model.get_parameter("layer.0.weight").detach().numpy(), values)


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("model.gguf", b"GGUF\x03\x00\x00\x00" + bytes(64), "is a GGUF file (llama.cpp)"),
        ("tf_model.h5", b"\x89HDF\r\n\x1a\n" + bytes(64), "is an HDF5 file (Keras or TensorFlow weights)"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch" + bytes(32), "is an ONNX model"),
    ],
    ids=["gguf", "hdf5", "onnx"],
)
def test_other_frameworks_files_are_named(tmp_path: Path, name: str, content: bytes, said: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match="^" + re.escape(f"{tmp_path / name}: {said}: paramscope reads PyTorch checkpoints")):
        open_source(str(tmp_path / name))


def test_a_keras_archive_is_named(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    with pytest.raises(SourceError, match="is a Keras model"):
        open_source(str(tmp_path / "model.keras"))


def test_arrays_larger_than_memory_are_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paramscope.core.files import safety

    np.savez_compressed(tmp_path / "zeros.npz", w=np.zeros((1024, 1024), np.float32))  # 4 MiB in a few KB
    monkeypatch.setattr(safety, "available_memory", lambda: 1024 * 1024)
    with pytest.raises(SourceError, match="declares 4.0 MiB of arrays, more than"):
        open_source(str(tmp_path / "zeros.npz"))


def _forged_npy(shape: tuple[int, ...]) -> bytes:
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return header.getvalue() + bytes(64)


def test_a_header_claiming_more_than_its_bytes_is_refused_before_numpy_allocates(tmp_path: Path) -> None:
    """numpy allocates an array's claimed shape before reading: a 200-byte file asked for 7 TiB."""
    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as archive:
        archive.writestr("w.npy", _forged_npy((10**12,)))
    with pytest.raises(SourceError, match=r"array 'w' float64\[1000000000000\] claims 7.3 TiB but holds 192 bytes: damaged or forged$"):
        open_source(str(tmp_path / "forged.npz"))
    (tmp_path / "forged.npy").write_bytes(_forged_npy((10**9,)))
    with pytest.raises(SourceError, match=r"claims 7.5 GiB but holds 192 bytes"):
        open_source(str(tmp_path / "forged.npy"))


def test_a_slash_name_that_would_become_another_arrays_name_keeps_both(tmp_path: Path) -> None:
    """'a/b' read as 'a.b' beside an array named 'a.b' replaced it: one array silently lost."""
    np.savez(tmp_path / "both.npz", **{"a.b": np.ones(2, np.float32), "a/b": np.zeros(3, np.float32)})
    opened = open_source(str(tmp_path / "both.npz"))
    state = opened.model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"a.b": (2,), "a/b": (3,)}
    assert any("kept as stored" in note for note in opened.notes)
