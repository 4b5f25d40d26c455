"""s3:// sources through s3fs, against a real local S3 API server (moto in server mode)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from paramscope.core.errors import SourceError
from paramscope.core.sources.sources import open_source

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "PARAMSCOPE_CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"ckpt-{tmp_path.name.lower().replace('_', '-')}"[:60]
    client.create_bucket(Bucket=bucket)
    return client, bucket


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"layers.{i}.weight": torch.randn(32, 16, generator=g) for i in range(3)} | {"head.bias": torch.randn(8, generator=g)}


def test_a_prefix_opens_its_index_and_shards(s3) -> None:
    client, bucket = s3
    tensors = _tensors()
    names = sorted(tensors)
    weight_map = {}
    for i, chunk in enumerate((names[:2], names[2:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        client.put_object(Bucket=bucket, Key=f"run/step-10/{shard}", Body=save({n: tensors[n] for n in chunk}))
        weight_map.update(dict.fromkeys(chunk, shard))
    index = json.dumps({"weight_map": weight_map}).encode()
    client.put_object(Bucket=bucket, Key="run/step-10/model.safetensors.index.json", Body=index)
    opened = open_source(f"s3://{bucket}/run/step-10/")
    assert opened.kind == "sharded"
    assert {n for n, _ in opened.model.state_dict().items()} == set(tensors)
    for name in names:
        assert torch.equal(opened.loader(name), tensors[name])
    assert "testing-secret" not in opened.source + " ".join(opened.notes)


def test_an_object_replaced_between_reads_is_refused(s3) -> None:
    client, bucket = s3
    big = {"z.big": torch.arange(100_000, dtype=torch.float32)}  # past the first read
    client.put_object(Bucket=bucket, Key="one/model.safetensors", Body=save(_tensors() | big))
    opened = open_source(f"s3://{bucket}/one/model.safetensors")
    assert torch.equal(opened.loader("head.bias"), _tensors()["head.bias"])
    client.put_object(Bucket=bucket, Key="one/model.safetensors", Body=save(_tensors(1) | big))
    with pytest.raises(SourceError, match="changed on the server since it was opened"):
        opened.loader("z.big")


def test_a_prefix_without_safetensors_says_download_first(s3) -> None:
    client, bucket = s3
    buffer = io.BytesIO()
    torch.save(_tensors(), buffer)
    client.put_object(Bucket=bucket, Key="pickled/model.pt", Body=buffer.getvalue())
    with pytest.raises(SourceError, match="download it first"):
        open_source(f"s3://{bucket}/pickled/")
    with pytest.raises(SourceError, match="download it first"):
        open_source(f"s3://{bucket}/pickled/model.pt")


def test_a_missing_object_is_one_line(s3) -> None:
    _, bucket = s3
    with pytest.raises(SourceError, match=f"s3://{bucket}/none/model.safetensors: not found"):
        open_source(f"s3://{bucket}/none/model.safetensors")
