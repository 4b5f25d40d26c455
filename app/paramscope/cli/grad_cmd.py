"""``paramscope grad SOURCE [--input SPEC] [--loss NAME] [--init RULE ...] [--seed N] [--json]``.

Runs one forward and backward pass on a sample input (see :mod:`paramscope.core.backward.backward`) and
prints the output value, the loss and every parameter's gradient statistics, with per-use parts
for tied parameters (the tutorial's 6 = 3 + 3) and the diagnostics found after backward.
"""

from __future__ import annotations

import argparse
from typing import Any

from paramscope.cli.common import add_source_arguments, fmt_number, open_from_args
from paramscope.cli.json_out import print_json

EPILOG = """\
input specs: rand(2,4), randn(...), ones(...), zeros(...), randint(2,16,high=100), optional
  dtype=float64, or a .pt file with a tensor or tuple of tensors; several inputs separated by ';';
  NAME=SPEC passes a keyword argument (sample=rand(1,3,32,32); timestep=ones(1)).
  Default: from the library (transformers' main input and config, diffusers' config, an exported
  graph's shapes), else from the model's first layer (Linear -> rand(2, in_features), ...).
losses: sum (the tutorial's net(X).sum()), mean, l2 (sum of squares), cross_entropy (random
  labels, for class scores (N, C) or (N, T, C)). Tuple/dict/dataclass outputs: the sum of the
  per-leaf losses over their floating-point tensors.
example (the tutorial's shared layer: output 9, gradient 6 = 3 + 3):
  paramscope grad demo:shared --init '*=constant(val=3)' --input 'ones(1,1)'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_source_arguments(parser)
    parser.add_argument("--input", metavar="SPEC", help="sample input (default: inferred from the model)")
    parser.add_argument("--loss", default="sum", metavar="NAME", help="sum (default), mean, l2, cross_entropy")
    parser.add_argument(
        "--init", action="append", default=[], metavar="RULE",
        help="SELECTOR=INIT(key=value,...) applied before the pass; repeatable, in order (tensors an initializer cannot take are skipped and named, as init does)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --init, random inputs, labels and dropout (default 0)")
    parser.add_argument("--mode", choices=("as-is", "train", "eval"), default="as-is", help="module mode during the pass (restored afterwards)")
    parser.add_argument("--no-parts", action="store_true", help="do not split tied gradients per use")
    parser.add_argument("--histograms", action="store_true", help="include gradient histograms in the JSON")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from paramscope.core.backward.backward import run_backward
    from paramscope.core.backward.backward_errors import BackwardUnavailable
    from paramscope.core.backward.input_specs import parse_input_spec
    from paramscope.core.backward.inputs import default_input
    from paramscope.core.backward.losses import get_loss

    get_loss(args.loss)  # bad arguments fail before the model is opened
    spec = parse_input_spec(args.input) if args.input else None
    rules = []
    if args.init:
        from paramscope.core.init.rule_parse import parse_rule

        rules = [parse_rule(text) for text in args.init]
    opened = open_from_args(args)
    if opened.forward_unavailable:
        raise BackwardUnavailable(f"{opened.source}: backward unavailable: {opened.forward_unavailable}")
    skipped = _apply_init(opened, rules, args.seed) if rules else ""
    if spec is None:
        spec = default_input(opened.model)
    train = {"as-is": None, "train": True, "eval": False}[args.mode]
    result = run_backward(
        opened.model, spec, args.loss, seed=args.seed, train=train, record_parts=not args.no_parts
    )
    data = result.to_dict(histogram=args.histograms)
    data["source"] = opened.source
    if spec.note and not args.input:
        data["notes"].insert(0, f"input: {spec.note}")
    if skipped:
        data["notes"].insert(0, skipped)
    if args.json:
        print_json(data)
    else:
        print(format_text(data))
    return 0


def _apply_init(opened: Any, rules: list[Any], seed: int) -> str:
    """Apply --init as ``init`` does: tensors an initializer cannot take are skipped, and named
    in the returned note ("" when none); a rule that can apply to nothing is refused."""
    from paramscope.core.edit.session import Session
    from paramscope.core.errors import listed
    from paramscope.core.init.rule_plans import RefusedError, check_unmatched, plan
    from paramscope.core.init.rules import apply_rules

    session = Session(opened)
    the_plan = plan(session, rules)
    check_unmatched(the_plan, session.report)  # a rule that hits nothing is a typo
    if sum(len(rp.hits) for rp in the_plan.rules) <= len(the_plan.refusals):
        raise RefusedError(the_plan.refusal_message(), the_plan)
    apply_rules(session, rules, seed=seed, skip_refused=True)
    names = [name for _, name, _ in the_plan.refusals]
    return f"--init skipped {len(names)} refused tensor(s): {listed(names)}" if names else ""


def _output_text(output: dict[str, Any]) -> list[str]:
    def one(leaf: dict[str, Any], label: str) -> str:
        if "value" in leaf:
            return f"{label}{leaf['value']!r}  (shape {leaf['shape']}, {leaf['dtype']})"
        s = leaf["stats"]
        return (
            f"{label}shape {leaf['shape']} {leaf['dtype']}  mean {fmt_number(s['mean'], 0)}  "
            f"std {fmt_number(s['std'], 0)}  min {fmt_number(s['min'], 0)}  max {fmt_number(s['max'], 0)}"
        )

    if "leaves" in output:
        return [f"Output ({output['type']}):"] + [one(leaf, f"  {leaf['path']}: ") for leaf in output["leaves"]]
    return [one(output, "Output: ")]


def format_text(data: dict[str, Any]) -> str:
    out = [f"paramscope grad {data['source']}", f"Input: {data['inputs']}"]
    out += _output_text(data["output"])
    out.append(f"Loss ({data['loss_name']}): {data['loss']!r}")
    out.append("")
    width = max([12] + [len(p["name"]) for p in data["parameters"]])
    out.append(
        f"  {'parameter':<{width}} {'shape':<12} {'grad norm':>10} {'mean':>10} {'max |g|':>10} "
        f"{'grad/weight':>11} {'zero frac':>10} {'NaN/Inf':>8}"
    )
    for p in data["parameters"]:
        shape = "uninit" if p["shape"] is None else "[" + ", ".join(map(str, p["shape"])) + "]"
        g = p["grad"]
        if g is None:
            why = "frozen" if not p["requires_grad"] else "None"
            out.append(f"  {p['name']:<{width}} {shape:<12} {'grad ' + why:>10}")
            continue
        out.append(
            f"  {p['name']:<{width}} {shape:<12} {fmt_number(g['norm'])} {fmt_number(g['mean'])} "
            f"{fmt_number(g['max_abs'])} {fmt_number(g['grad_to_weight'], 11)} "
            f"{fmt_number(g['zero_fraction'])} {str(g['nan']) + '/' + str(g['inf']):>8}"
        )
        if len(p["aliases"]) > 1:
            out.append(f"    also named: {', '.join(p['aliases'][1:])}")
        if "value" in g:
            out.append(f"    grad = {g['value']!r}")
        for part in p.get("parts", []):
            shown = f"{part['value']!r}" if "value" in part else f"norm {fmt_number(part['stats']['norm'], 0).strip()}"
            out.append(f"    part from {part['module']}: {shown}")
        if p.get("parts") and all("value" in part for part in p["parts"]) and "value" in g:
            terms = " + ".join(repr(part["value"]) for part in p["parts"])
            out.append(f"    {g['value']!r} = {terms}")
    if data["diagnostics"]:
        out.append("")
        out.append("Diagnostics")
        for d in data["diagnostics"]:
            out.append(f"  [{d['severity']}] {d['message']}")
    for note in data["notes"]:
        out.append(f"note: {note}")
    return "\n".join(out)
