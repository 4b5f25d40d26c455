"""``paramscope inspect SOURCE [--json]``: a model summary from the core report."""

from __future__ import annotations

import argparse
import gc
from typing import Any

from paramscope.cli.common import (
    add_source_arguments,
    fmt_count,
    fmt_number,
    open_from_args,
    terminal_progress,
)
from paramscope.cli.json_out import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--spectra", action="store_true", help="singular values, spectral norm, stable rank, condition number and the Marchenko-Pastur edge of every weight matrix (conv weights as out x rest)")
    parser.add_argument("--bins", type=int, default=32, help="histogram bins in the JSON (default 32)")


def run(args: argparse.Namespace) -> int:
    # Millions of small objects (a module, infos, summaries per tensor) and no cyclic garbage
    # to speak of: the collector's passes over them were a third of the time at 100,000 tensors.
    gc.disable()
    try:
        return _run(args)
    finally:
        gc.enable()


def _run(args: argparse.Namespace) -> int:
    from paramscope.core.model.inspection import inspect_model

    opened = open_from_args(args)
    with terminal_progress() as state:  # every tensor is read: a 15 GB model takes a minute
        data = inspect_model(opened.model, bins=args.bins, state=state, loader=opened.loader, lazy=args.json)  # JSON: streamed
    if opened.forward_unavailable:
        data["forward_unavailable"] = opened.forward_unavailable
    data["notes"] = list(opened.notes)
    data["extras"] = dict(opened.extras)
    data["weight_entries"] = list(opened.entries)
    data["optimizers"] = [summary.to_dict() for summary in opened.optimizers]
    if args.spectra:
        data.update(spectra_data(opened, data))
    if args.json:
        data["source"] = opened.source
        print_json(data)
    else:
        print(format_text(opened.source, data))
    return 0


def format_text(source: str, data: dict[str, Any]) -> str:
    out: list[str] = [f"paramscope inspect {source}", ""]
    out.append("Module tree")
    for m in data["modules"]:
        depth = 0 if m["name"] == "" else m["name"].count(".") + 1
        label = m["name"].rpartition(".")[2] or "(root)"
        extra = f"({m['extra_repr']})" if m["extra_repr"] else ""
        shared = f"  [same module as {m['same_as']}]" if m.get("same_as") is not None else ""
        out.append(f"{'  ' * depth}{label}: {m['type']}{extra}  params {fmt_count(m['total_params'])}{shared}")
    out.append("")
    out.append("Parameters")
    width = max([28] + [len(p["name"]) for p in data["parameters"]])
    header = f"  {'name':<{width}} {'shape':<14} {'dtype':<9} {'grad':<5} {'mean':>10} {'std':>10} {'min':>10} {'max':>10} {'norm':>10}"
    out.append(header)
    for p in data["parameters"]:
        s = p["stats"]
        shape = "uninit" if p["shape"] is None else "[" + ", ".join(map(str, p["shape"])) + "]"
        out.append(
            f"  {p['name']:<{width}} {shape:<14} {p['dtype']:<9} {str(p['requires_grad']):<5} "
            f"{fmt_number(s['mean'])} {fmt_number(s['std'])} {fmt_number(s['min'])} {fmt_number(s['max'])} {fmt_number(s['norm'])}"
        )
        if len(p["aliases"]) > 1:
            out.append(f"    also named: {', '.join(p['aliases'][1:])}")
        if s["nan"] or s["inf"]:
            out.append(f"    NaN: {s['nan']}  Inf: {s['inf']}")
        if s.get("note"):
            out.append(f"    note: {s['note']}")
    if data["buffers"]:
        out.append("")
        out.append("Buffers")
        for b in data["buffers"]:
            shape = "[" + ", ".join(map(str, b["shape"])) + "]"
            flag = "" if b["persistent"] else "  (non-persistent)"
            out.append(f"  {b['name']:<{width}} {shape:<14} {b['dtype']:<9}{flag}")
    out.append("")
    out.append(f"Tied groups: {len(data['tied_groups'])}")
    for group in data["tied_groups"]:
        out.append(f"  {' = '.join(group)}")
    out.append(f"Unregistered tensors: {len(data['unregistered'])}")
    for u in data["unregistered"]:
        out.append(f"  {u['message']}")
    out.append("")
    out.append(f"Total params: {fmt_count(data['total_params'])}   Unique params: {fmt_count(data['unique_params'])}")
    if data.get("forward_unavailable"):
        out.append(f"Forward/backward unavailable: {data['forward_unavailable']}")
    out += checkpoint_text(data)
    if "spectra" in data:
        out += spectra_text(data)
    return "\n".join(out)


def checkpoint_text(data: dict[str, Any]) -> list[str]:
    """The Notes, Checkpoint and Optimizer sections: what a training checkpoint held beside the weights."""
    out: list[str] = []
    if data.get("notes"):
        out += ["", "Notes"] + [f"  {note}" for note in data["notes"]]
    if data.get("extras"):
        out += ["", "Checkpoint"] + _tree_lines(data["extras"], 1)
    for optimizer in data.get("optimizers") or []:
        out += [""] + optimizer_lines(optimizer)
    return out


# levels of nested entries the text shows (Lightning's loop counters go deeper; the JSON has all)
TEXT_DEPTH = 2


def _tree_lines(value: dict[str, Any], depth: int) -> list[str]:
    lines = []
    for key, item in value.items():
        if isinstance(item, dict) and item and depth < TEXT_DEPTH:
            lines.append(f"{'  ' * depth}{key}:")
            lines += _tree_lines(item, depth + 1)
        elif isinstance(item, dict) and item:
            lines.append(f"{'  ' * depth}{key}: {len(item)} entries (see --json)")
        else:
            lines.append(f"{'  ' * depth}{key}: {item}")
    return lines


def optimizer_lines(optimizer: dict[str, Any]) -> list[str]:
    """A compact table of one optimizer state: a row per parameter and state key."""
    step = "" if optimizer["step"] is None else f", step {optimizer['step']:g}"
    groups = "; ".join(
        ", ".join(f"{k} {v}" for k, v in group.items()) for group in optimizer["groups"]
    )
    out = [
        f"Optimizer ({optimizer['entry']}): {optimizer['kind']}, {optimizer['parameter_states']} parameter states{step}",
        f"  groups: {groups}",
    ]
    rows = optimizer["states"]
    if not rows:
        return out
    label = [row["name"] if row["name"] is not None else f"#{row['index']}" for row in rows]
    width = max([12] + [len(text) for text in label])
    keys = max(len(row["key"]) for row in rows)
    out.append(f"  {'parameter':<{width}} {'state':<{keys}} {'shape':<14} {'mean':>10} {'std':>10} {'min':>10} {'max':>10} {'norm':>10}")
    for text, row in zip(label, rows, strict=True):
        shape = "[" + ", ".join(map(str, row["shape"])) + "]"
        out.append(
            f"  {text:<{width}} {row['key']:<{keys}} {shape:<14} {fmt_number(row['mean'])} {fmt_number(row['std'])} "
            f"{fmt_number(row['min'])} {fmt_number(row['max'])} {fmt_number(row['norm'])}"
        )
    return out


def spectra_data(opened: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``spectra`` (one entry per weight matrix) and ``spectra_skipped`` (name -> why) for the JSON."""
    from paramscope.core.model.experts import expert_matrices, experts_layout_of
    from paramscope.core.model.spectra import SpectraRequest, run

    model, loader = opened.model, opened.loader
    shapes: dict[str, tuple[int, ...]] = {}
    experts = {}  # "name[e]" -> (name, e, is_transposed): each expert's matrix of a stacked tensor
    for p in data["parameters"]:
        name, shape = p["name"], p["shape"]
        if shape is None or len(shape) < 2:
            continue
        transposed = experts_layout_of(model, name, model.get_parameter(name))
        if transposed is None:
            shapes[name] = tuple(shape)
            continue
        for e in range(shape[0]):
            experts[f"{name}[{e}]"] = (name, e, transposed)
            shapes[f"{name}[{e}]"] = (shape[2], shape[1]) if transposed else (shape[1], shape[2])

    def tensor_of(name: str) -> Any:
        stacked, e, transposed = experts.get(name, (name, None, False))
        tensor = model.get_parameter(stacked)
        tensor = loader(stacked) if tensor.device.type == "meta" and loader is not None else tensor
        return tensor if e is None else expert_matrices(tensor, transposed)[e]

    result = run(SpectraRequest(list(shapes), tensor_of, shape_of=shapes.__getitem__))
    return {
        "spectra": [s.to_dict() for s in result.spectra.values()],
        "spectra_skipped": [{"name": n, "reason": why} for n, why in result.skipped.items()],
    }


def spectra_text(data: dict[str, Any]) -> list[str]:
    out = ["", "Spectra (weights as out x rest, stacked experts as NAME[expert]; MP: Marchenko-Pastur edge for i.i.d. entries of the same std)"]
    width = max([28] + [len(s["name"]) for s in data["spectra"]])
    out.append(f"  {'name':<{width}} {'matrix':<12} {'spec norm':>10} {'stable rank':>11} {'cond':>10} {'MP edge':>10} {'above':>6}")
    for s in data["spectra"]:
        matrix = f"{s['matrix'][0]}x{s['matrix'][1]}"
        mp = s["marchenko_pastur"]
        out.append(
            f"  {s['name']:<{width}} {matrix:<12} {fmt_number(s['spectral_norm'])} {fmt_number(s['stable_rank'], 11)} "
            f"{fmt_number(s['condition_number'])} {fmt_number(mp['high'])} {mp['outliers']:>6}"
        )
    for skipped in data["spectra_skipped"]:
        out.append(f"  {skipped['name']}: skipped: {skipped['reason']}")
    return out
