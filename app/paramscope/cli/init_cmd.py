"""``paramscope init SOURCE --rule 'SELECTOR=INIT(key=value,...)' ... [--seed N] -o OUT``.

Rules apply in order with one seeded generator (see :mod:`paramscope.core.init.rules`); every target
is checked before anything changes, and the state_dict is written atomically (``.pt`` or
``.safetensors``). A custom initializer (``file.py:function``) runs that file's Python code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from paramscope.cli.common import add_source_arguments, add_sync_argument, open_from_args

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session
    from paramscope.core.init.rule_parse import InitRule
    from paramscope.core.sources.sources import OpenedModel

EPILOG = """\
rules: SELECTOR=INIT(key=value,...)
  SELECTOR  glob on qualified names (*.weight, 0.*, *), re:REGEX, type:Linear, weights, biases
  INIT      a torch.nn.init name (normal, kaiming_uniform_, ...), default (reset_parameters()),
            or FILE.py:FUNCTION / package.module:FUNCTION (runs that Python code)
examples:
  paramscope init demo:mlp --rule '*.weight=normal(mean=0,std=0.01)' --rule '*.bias=constant(val=0)' -o out.pt
  paramscope init demo:mlp --rule 're:^0\\.=xavier_uniform(gain=1.0)' --seed 0 -o out.safetensors
  paramscope init demo:deep_mlp --rule '*.weight=lsuv(tol=0.05)' --input 'randn(256,64)' -o out.pt
    (lsuv, data-dependent: needs the model's code and a sample input; Mishkin & Matas 2016)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_source_arguments(parser)
    parser.add_argument("--rule", action="append", default=[], metavar="RULE", help="SELECTOR=INIT(key=value,...); repeatable, applied in order")
    parser.add_argument("--preset", metavar="NAME", help="a named recipe (paramscope presets lists them), e.g. gpt2 or 'mup(base_width=32)'; its rules come before --rule's")
    parser.add_argument("--rules-file", metavar="FILE", help="rules, one per line (# comments), e.g. edited from 'paramscope presets NAME SOURCE'")
    parser.add_argument("--input", metavar="SPEC", help="sample input for data-dependent initializers (lsuv), e.g. 'randn(256,64)'")
    parser.add_argument("--seed", type=int, default=None, help="seed of the torch.Generator (default: a random seed, printed)")
    parser.add_argument("-o", "--output", metavar="OUT", help="write the state_dict here (.pt, .pth, .bin or .safetensors)")
    parser.add_argument("--strict", action="store_true", help="apply nothing if an initializer cannot apply to some hit tensor (default: skip those tensors, say which, apply the rest)")
    parser.add_argument("--dry-run", action="store_true", help="only list which tensors each rule hits")
    parser.add_argument("--script", metavar="PY", help="also write a Python script that replays the init")
    add_sync_argument(parser)


def _file_rules(path: str | None) -> list[str]:
    if not path:
        return []
    from paramscope.core.errors import SourceError
    from paramscope.core.init.presets import read_rules_file

    try:
        with open(path, encoding="utf-8") as handle:
            return read_rules_file(handle.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read the rules file ({type(exc).__name__}: {exc})") from exc


def run(args: argparse.Namespace) -> int:
    from paramscope.core.edit.session import Session
    from paramscope.core.init.rule_plans import RefusedError, check_unmatched, plan

    rules = _parsed_rules(args)  # bad arguments and rules fail before the model is opened
    opened = open_from_args(args)
    rules = _with_preset(args, opened, rules)
    session = Session(opened)
    the_plan = plan(session, rules)
    print(the_plan.describe(session.report))
    check_unmatched(the_plan, session.report)  # a rule that hits nothing is a typo, --strict or not
    if not the_plan.ok and args.strict:
        raise RefusedError(the_plan.refusal_message() + " (--strict)", the_plan)
    applicable = sum(len(rp.hits) for rp in the_plan.rules) - len(the_plan.refusals)
    if applicable <= 0:
        raise RefusedError(the_plan.refusal_message(), the_plan)
    if args.dry_run:
        return 0
    if the_plan.refusals:
        print(f"skipped {len(the_plan.refusals)} refused tensor(s): " + ", ".join(n for _, n, _ in the_plan.refusals))
    _apply(args, session, rules)
    return 0


def _parsed_rules(args: argparse.Namespace) -> list[InitRule]:
    """The rules of --rules-file and --rule, parsed; checks the other arguments first."""
    from paramscope.core.errors import ParamscopeError
    from paramscope.core.init.rule_parse import parse_rule

    texts = _file_rules(args.rules_file) + list(args.rule)
    if args.preset:
        from paramscope.core.init.presets import parse_preset

        parse_preset(args.preset)  # a bad name fails before the model is opened
    elif not texts:
        raise ParamscopeError("init: give at least one --rule 'SELECTOR=INIT(key=value,...)', --rules-file or --preset")
    if not args.output and not args.dry_run:
        raise ParamscopeError("init: give -o OUT.pt (or OUT.safetensors), or --dry-run")
    if args.output:
        from paramscope.core.files.export import export_format

        export_format(Path(args.output))  # a bad extension fails before any work
    return [parse_rule(text) for text in texts]


def _with_preset(args: argparse.Namespace, opened: OpenedModel, rules: list[InitRule]) -> list[InitRule]:
    """The preset's rules (its comments printed) before ``rules``; ``input=`` filled in where needed."""
    from paramscope.core.init.rule_parse import fill_input

    if args.preset:
        from paramscope.core.init.presets import preset_rules
        from paramscope.core.model.report import build_report

        made = preset_rules(args.preset, opened.model, build_report(opened.model))
        print("\n".join(f"# {c}" for c in made.comments))
        preset = fill_input(made.rules, args.input or _sample_input(opened, made.rules))
        rules = preset + rules
    return fill_input(rules, args.input)


def _sample_input(opened: OpenedModel, rules: list[str]) -> str | None:
    """The model's sample input for a preset's data-dependent rules (lsuv) when --input names
    none, as the window's Presets dialog fills it in; said in a comment."""
    from paramscope.core.backward.sample_input import sample_input_text
    from paramscope.core.init.rule_parse import fill_input

    if opened.forward_unavailable or fill_input(rules, "x") == fill_input(rules, None):
        return None  # no model code to run, or no rule that needs an input
    text = sample_input_text(opened.model)
    print(f"# input: {text} (the model's sample input; --input SPEC to choose one)")
    return text


def _apply(args: argparse.Namespace, session: Session, rules: list[InitRule]) -> None:
    """Apply the rules (refused tensors skipped unless --strict), write the script and the file."""
    from paramscope.core.files.export import export_model
    from paramscope.core.init.rules import apply_rules

    commands = apply_rules(session, rules, seed=args.seed, skip_refused=not args.strict)
    print(f"seed {commands[0].seed}" if commands else "no tensor changed")  # type: ignore[attr-defined]
    for command in commands:
        for note in command.rule_plan.run_notes:  # type: ignore[attr-defined]
            print(f"note: {note}")
    if args.script:
        from paramscope.core.edit.replay import replay_script
        from paramscope.core.files.atomic import write_text_atomically

        write_text_atomically(Path(args.script), replay_script(session))
        print(f"wrote {args.script}")
    result = export_model(session.model, args.output, loader=session.opened.loader, sync=args.sync)
    print(f"wrote {result.path} ({result.format}): {result.tensors} tensors")
