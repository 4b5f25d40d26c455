"""The core report on the tutorial's models and on the odd cases a real model brings."""

from __future__ import annotations

import torch
from torch import nn

from paramscope.core.model.report import build_report
from paramscope.core.sources.demos import build_demo


def test_tutorial_mlp_names_and_shapes() -> None:
    report = build_report(build_demo("mlp"))
    shapes = {name: info.shape for name, info in report.parameters.items()}
    assert shapes == {"0.weight": (3, 4), "0.bias": (3,), "2.weight": (1, 3), "2.bias": (1,)}
    assert [m.type_name for m in report.modules.values()] == ["Sequential", "Linear", "ReLU", "Linear"]
    assert report.modules["0"].extra_repr == "in_features=4, out_features=3, bias=True"
    assert report.modules[""].total_params == 19
    assert report.modules["0"].own_params == 15


def test_relative_names_under_a_submodule_match_named_parameters() -> None:
    net = build_demo("mlp")
    report = build_report(net)
    ours = [(rel, info.shape) for rel, info in report.parameters_under("0")]
    theirs = [(name, tuple(p.shape)) for name, p in net[0].named_parameters()]
    assert ours == theirs == [("weight", (3, 4)), ("bias", (3,))]


def test_unregistered_weight2_is_flagged_and_weight1_is_not() -> None:
    report = build_report(build_demo("unregistered"))
    assert list(report.parameters) == ["weight1"]
    flagged = [(u.module, u.attribute) for u in report.unregistered]
    assert flagged == [("", "weight2")]
    assert "weight2" in report.unregistered[0].message


def test_modules_in_a_plain_list_are_flagged() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [nn.Linear(2, 2), nn.Linear(2, 2)]

    report = build_report(Broken())
    assert report.parameters == {}
    assert [u.kind for u in report.unregistered] == ["modules in list"]
    assert "nn.ModuleList" in report.unregistered[0].message


def test_shared_demo_has_one_tied_group_counted_once() -> None:
    report = build_report(build_demo("shared"))
    assert [g.names for g in report.tied_groups] == [("0.weight", "1.weight")]
    assert report.total_params == 2
    assert report.unique_params == 1
    assert report.modules[""].total_params == 1
    assert report.modules["1"].same_as == "0"
    assert dict(report.parameters_under("1")) == {"weight": report.parameters["0.weight"]}


def test_tied_language_model_groups_embedding_and_head() -> None:
    model = build_demo("tiny_lm")
    report = build_report(model)
    groups = [set(g.names) for g in report.tied_groups]
    assert {"embed.weight", "head.weight"} in groups
    vocab_dim = model.embed.weight.numel()
    assert report.total_params - report.unique_params == vocab_dim


def test_tensors_sharing_storage_are_grouped() -> None:
    class Views(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            base = torch.randn(4, 4)
            self.a = nn.Parameter(base)
            self.b = nn.Parameter(torch.empty(0))
            self.b.data = self.a.data[1]  # manual .data sharing: a view of a's row
            self.register_buffer("c", torch.zeros(3))

    report = build_report(Views())
    storage = [g for g in report.tied_groups if g.kind == "shared storage"]
    assert [set(g.names) for g in storage] == [{"a", "b"}]


def test_buffers_with_persistent_flag() -> None:
    net = build_demo("cnn")
    net.features[1].register_buffer("scratch", torch.zeros(2), persistent=False)
    report = build_report(net)
    assert report.buffers["features.1.running_mean"].persistent
    assert not report.buffers["features.1.scratch"].persistent
    assert report.buffers["features.1.num_batches_tracked"].dtype == "int64"


def test_lazy_parameters_have_no_shape_and_do_not_crash() -> None:
    report = build_report(build_demo("lazy"))
    info = report.parameters["0.weight"]
    assert info.shape is None and info.numel == 0
    assert "lazy" in (info.note or "")


def test_meta_device_model() -> None:
    with torch.device("meta"):
        net = nn.Linear(3, 2)
    report = build_report(net)
    assert report.parameters["weight"].device == "meta"
    assert "meta" in (report.parameters["weight"].note or "")
    assert report.tied_groups == []


def test_every_demo_builds_a_report_and_is_repeatable() -> None:
    from paramscope.core.sources.demos import DEMOS

    for name in DEMOS:
        first, second = build_demo(name), build_demo(name)
        report = build_report(first)
        assert report.modules
        for (n1, p1), (n2, p2) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
            assert n1 == n2
            if p1.device.type != "meta" and not isinstance(p1, nn.parameter.UninitializedTensorMixin):
                assert torch.equal(p1, p2), f"demo:{name} {n1} differs between builds"


def test_building_a_demo_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_demo("deep_mlp")
    assert torch.equal(torch.rand(3), expected)
