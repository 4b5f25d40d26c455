"""An init on a lazily opened model (files over a GiB: tensors read when looked at) reads the
values it writes when it is applied, not when it is planned.

The Initialize panel plans the request at every selection, on the GUI thread: that read a
1.85 GB embedding from disk (0.9 s) and kept it in the model, so clicking through the tensors of
a 100 GB model loaded all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.core.edit.session import Session
from paramscope.core.files import regions
from paramscope.core.init.rule_plans import plan
from paramscope.core.init.rules import apply_rules, preview_rules
from paramscope.core.sources.sources import open_source

STATE = {
    "0.weight": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
    "0.bias": torch.randn(3, generator=torch.Generator().manual_seed(1)),
    "1.weight": torch.randn(2, 3, generator=torch.Generator().manual_seed(2)),
}


@pytest.fixture
def lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Session:
    path = tmp_path / "ckpt.safetensors"
    save_file(STATE, str(path))
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)  # as a file of many gigabytes opens
    session = Session(open_source(str(path)))
    assert unread(session) == set(STATE)
    return session


def unread(session: Session) -> set[str]:
    return {name for name in STATE if session.tensor(name).device.type == "meta"}


def test_planning_reads_no_values_and_still_checks_shapes_and_dtypes(lazy: Session) -> None:
    the_plan = plan(lazy, ["*.weight=orthogonal_", "*.bias=orthogonal_", "*.weight=kaiming_normal_"])
    assert [(name, why) for _, name, why in the_plan.refusals] == [
        ("0.bias", "orthogonal_ needs at least 2 dimensions, this one is 1-D")
    ]
    assert unread(lazy) == set(STATE)
    assert lazy.unread_bytes(STATE) == sum(t.numel() * 4 for t in STATE.values())


def test_a_preview_reads_without_keeping_and_apply_writes_what_it_showed(lazy: Session) -> None:
    _, previewed = preview_rules(lazy, ["0.weight=normal_(std=2.0)"], seed=3)
    assert unread(lazy) == set(STATE)  # read for the preview, not kept
    assert not torch.equal(previewed["0.weight"], STATE["0.weight"])

    apply_rules(lazy, ["0.weight=normal_(std=2.0)"], seed=3)
    assert unread(lazy) == {"0.bias", "1.weight"}  # only the target was read
    assert torch.equal(lazy.tensor("0.weight").detach(), previewed["0.weight"])
    assert torch.equal(lazy.values("1.weight"), STATE["1.weight"])
    lazy.undo()
    assert torch.equal(lazy.tensor("0.weight").detach(), STATE["0.weight"])
