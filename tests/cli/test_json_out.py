"""The ``--json`` writer: long lists go through orjson, and must read back as the standard
library's JSON does (orjson writes NaN and Inf as null, and refuses integers past 64 bits)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import torch
from torch import nn

from paramscope.cli.json_out import _json_text
from paramscope.core.model.inspection import report_to_dict
from paramscope.core.model.json_ready import json_ready
from paramscope.core.model.model_statistics import compute_model_statistics
from paramscope.core.model.report import build_report


def _as_the_standard_library_writes(data: object) -> object:
    return json.loads(json.dumps(json_ready(data), allow_nan=False))


def test_items_of_long_lists_read_back_as_the_standard_library_writes_them() -> None:
    rows = [
        {"name": "nan", "value": math.nan},
        {"name": "inf in a list", "values": [1.0, -math.inf]},
        {"name": "deep", "histogram": {"edges": [0.0, math.inf], "counts": [3]}},
        {"name": "big", "count": 2**70},
        {"name": "sum past float's range", "values": [1e308, 1e308]},
        {"name": "mixed", "values": ["a", None, True, 0.1, 1e-5, 2]},
        [1.5, math.nan],
        OrderedDict(name="an OrderedDict (a state_dict's type)", value=math.inf),
    ]
    data = {"rows": rows, "total": math.inf, "empty": []}

    written = json.loads(_json_text(data))

    assert written == _as_the_standard_library_writes(data)
    assert written["rows"][0]["value"] == "nan" and written["rows"][2]["histogram"]["edges"][1] == "inf"


class _Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fine = nn.Parameter(torch.linspace(-1, 1, 12))
        self.odd = nn.Parameter(torch.tensor([1.0, math.nan, math.inf, -math.inf]))
        # float64 at the edge of its range: the norm is past it (Inf)
        self.huge = nn.Parameter(torch.tensor([-1.5e308, 1.5e308, 1.5e308], dtype=torch.float64))
        self.register_buffer("empty", torch.zeros(0))


def test_tensor_entries_read_back_as_the_standard_library_writes_them() -> None:
    model = _Odd()
    report = build_report(model)
    summaries = compute_model_statistics(model, report, bins=8)

    written = json.loads(_json_text(report_to_dict(report, summaries, lazy=True)))

    assert written == _as_the_standard_library_writes(report_to_dict(report, summaries))
    huge = next(p for p in written["parameters"] if p["name"] == "huge")
    assert huge["stats"]["norm"] == "inf"  # (orjson alone writes null)
