"""``paramscope compare-init SOURCE --scheme NAME... [--input SPEC] [--json|--csv]``.

Runs the same input through the model under each scheme (see :mod:`paramscope.core.init.compare`)
and prints activation std and gradient std per depth, one column pair per scheme.
"""

from __future__ import annotations

import argparse
from typing import Any

from paramscope.cli.common import add_source_arguments, fmt_number, open_from_args
from paramscope.cli.json_out import print_json

EPILOG = """\
schemes: current (the weights as they are), a preset (paramscope presets lists them: gpt2, bert,
  pytorch, fixup, 'mup(base_width=32)', lsuv), or one rule such as '*.weight=kaiming_normal(nonlinearity=relu)'.
  Each scheme is applied with --seed, run, and undone: the model is left as it was.
example:
  paramscope compare-init demo:deep_mlp --scheme current pytorch '*.weight=normal(std=0.01)' lsuv --input 'randn(256,64)'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_source_arguments(parser)
    parser.add_argument("--scheme", nargs="+", action="extend", default=[], metavar="NAME", required=True,
                        help="current, a preset name, or a rule; two or more to compare")  # fmt: skip
    parser.add_argument("--input", metavar="SPEC", help="sample input (default: inferred from the model)")
    parser.add_argument("--loss", default="sum", metavar="NAME", help="sum (default), mean, l2, cross_entropy")
    parser.add_argument("--seed", type=int, default=0, help="seed of every scheme's init, the input and dropout (default 0)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--csv", action="store_true", help="one row per depth, two columns per scheme")


def run(args: argparse.Namespace) -> int:
    from paramscope.core.backward.backward_errors import BackwardUnavailable
    from paramscope.core.backward.input_specs import parse_input_spec
    from paramscope.core.backward.inputs import default_input
    from paramscope.core.backward.losses import get_loss
    from paramscope.core.edit.session import Session
    from paramscope.core.init.compare import compare_schemes

    get_loss(args.loss)
    spec = parse_input_spec(args.input) if args.input else None
    opened = open_from_args(args)
    if opened.forward_unavailable:
        raise BackwardUnavailable(f"{opened.source}: compare-init needs the model's forward: {opened.forward_unavailable}")
    if spec is None:
        spec = default_input(opened.model)
    comparison = compare_schemes(Session(opened), args.scheme, spec, seed=args.seed, loss=args.loss)
    data = comparison.to_dict()
    data["source"] = opened.source
    if args.json:
        print_json(data)
    elif args.csv:
        print(comparison.csv(), end="")
    else:
        print(format_text(data))
    return 0


def format_text(data: dict[str, Any]) -> str:
    schemes = data["schemes"]
    out = [f"paramscope compare-init {data['source']}", f"Input: {data['input']}  (seed {data['seed']})", ""]
    for number, s in enumerate(schemes, start=1):
        out.append(f"[{number}] {s['scheme']}: loss {s['loss']:.6g}" + (f"  rules: {'; '.join(s['rules'])}" if s["rules"] else ""))
        out += [f"    note: {n}" for n in s["notes"]]
    out.append("")
    width = max([12] + [len(layer["module"]) + len(layer["type"]) + 3 for layer in data["layers"]])
    head = f"  {'#':>3} {'layer':<{width}}" + "".join(f" {f'[{i}] act':>10} {f'[{i}] grad':>10}" for i in range(1, len(schemes) + 1))
    out.append("activation std and gradient std per depth")
    out.append(head)
    for layer in data["layers"]:
        index = layer["index"]
        cells = ""
        for s in schemes:
            point = s["signal"][index] if index < len(s["signal"]) else {}
            cells += f" {fmt_number(point.get('activation_std'))} {fmt_number(point.get('gradient_std'))}"
        label = f"{layer['module']} ({layer['type']})"
        out.append(f"  {index:>3} {label:<{width}}{cells}")
    return "\n".join(out)
