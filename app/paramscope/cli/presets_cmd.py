"""``paramscope presets [NAME [SOURCE]]``: named init recipes, with their sources, as rules.

Without arguments it lists the presets; with NAME it describes one; with NAME and SOURCE it
prints the rules that preset gives for that model, as a rules file to read, edit and apply
(``paramscope init SOURCE --rules-file FILE -o OUT``), or apply as is (``init --preset NAME``).
"""

from __future__ import annotations

import argparse

from paramscope.cli.json_out import print_json

EPILOG = """\
examples:
  paramscope presets
  paramscope presets gpt2 demo:tiny_lm > rules.txt      # read, edit, then:
  paramscope init demo:tiny_lm --rules-file rules.txt --seed 0 -o out.pt
  paramscope init demo:tiny_lm --preset 'mup(base_width=16)' --dry-run
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("preset", nargs="?", help="NAME or NAME(key=value,...)")
    parser.add_argument("source", nargs="?", help="a model (demo:NAME, FILE.py:NAME, ...): print the preset's rules for it")
    parser.add_argument("--trust", action="store_true", help="allow files that can run code (pickled modules, .pt2)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _param_text(spec: object) -> str:
    from paramscope.core.edit.replay import format_value

    default = "required" if spec.required else format_value(spec.default)  # type: ignore[attr-defined]
    return f"{spec.name}={default}"  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    from paramscope.core.init.presets import PRESETS, parse_preset

    if not args.preset:
        if args.json:
            print_json({"presets": [_preset_dict(p) for p in PRESETS.values()]})
            return 0
        width = max(len(n) for n in PRESETS)
        for preset in PRESETS.values():
            print(f"{preset.name:<{width}}  {preset.title}")
            print(f"{'':<{width}}  source: {preset.source}")
        return 0
    preset, _ = parse_preset(args.preset) if args.source else (PRESETS.get(args.preset.split("(")[0].strip()), None)
    if preset is None:
        parse_preset(args.preset)  # raises with the known names
    assert preset is not None
    if not args.source:
        data = _preset_dict(preset)
        if args.json:
            print_json(data)
        else:
            print(f"{preset.name}: {preset.title}\nsource: {preset.source}")
            if preset.params:
                print("arguments: " + ", ".join(_param_text(p) for p in preset.params))
            if preset.description:
                print(preset.description)
        return 0
    from paramscope.cli.common import open_from_args
    from paramscope.core.init.presets import preset_rules
    from paramscope.core.model.report import build_report

    opened = open_from_args(args)
    result = preset_rules(args.preset, opened.model, build_report(opened.model))
    if args.json:
        print_json({"preset": preset.name, "source": opened.source, "rules": result.rules, "comments": result.comments})
    else:
        print(result.text(), end="")
    return 0


def _preset_dict(preset: object) -> dict[str, object]:
    return {
        "name": preset.name,  # type: ignore[attr-defined]
        "title": preset.title,  # type: ignore[attr-defined]
        "source": preset.source,  # type: ignore[attr-defined]
        "arguments": [_param_text(p) for p in preset.params],  # type: ignore[attr-defined]
    }
