"""The bench's remote checkpoint: Llama-405B-shaped, sparse (no disk), served by ranges."""

from __future__ import annotations

import json
from pathlib import Path

from paramscope.core.bench.bench_remote import LLAMA_405B, llama_tensors, write_sparse_llama
from paramscope.core.bench.bench_server import ServerProcess
from paramscope.core.model.report import build_report
from paramscope.core.sources.sources import open_source


def test_the_shape_is_llama_405b() -> None:
    tensors = llama_tensors(LLAMA_405B)
    params = 0
    for _, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        params += count
    assert 405_000_000_000 < params < 406_000_000_000  # 405.9B: Llama 3.1 405B's count
    assert len(tensors) == 126 * 9 + 3


def test_191_sparse_shards_open_to_a_full_tree_through_the_server(tmp_path: Path) -> None:
    shards = write_sparse_llama(tmp_path, LLAMA_405B)
    assert len(shards) == 191
    files = sorted(tmp_path.glob("*.safetensors"))
    apparent = sum(f.stat().st_size for f in files)
    assert apparent > 800e9  # 811 GB of bf16...
    assert sum(f.stat().st_blocks * 512 for f in files) < 200e6  # ...on almost no disk
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["lm_head.weight"] == "model-00191-of-00191.safetensors"
    with ServerProcess(tmp_path, 0) as base:
        opened = open_source(f"{base}/model.safetensors.index.json")
        report = build_report(opened.model)
        norm = opened.loader("model.layers.125.post_attention_layernorm.weight")
    layers = opened.model.get_submodule("model.layers")
    assert len(list(layers.children())) == 126
    assert len(report.parameters) == len(llama_tensors(LLAMA_405B))
    assert norm.shape == (16384,) and not norm.any()  # a hole reads as zeros
