"""Command line: ``paramscope [SOURCE]`` opens the window; subcommands share the same core.

This module imports neither torch nor Qt, so ``--help`` and ``--version`` answer at once;
each subcommand module imports what it needs inside its ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from paramscope import __version__
from paramscope.cli.common import add_cache_arguments, add_entry_arguments, apply_cache_arguments
from paramscope.core.errors import ParamscopeError

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("paramscope.cli.inspect_cmd", "tree, parameters with statistics, buffers, ties, unregistered tensors"),
    "init": ("paramscope.cli.init_cmd", "re-initialize parameters by rules and write a state_dict"),
    "presets": ("paramscope.cli.presets_cmd", "named init recipes (GPT-2, BERT, Fixup, muP, ...) as editable rules"),
    "compare-init": ("paramscope.cli.compare_cmd", "run one input under several init schemes; activation/gradient std per depth"),
    "grad": ("paramscope.cli.grad_cmd", "run forward and backward on a sample input; show gradients"),
    "export": ("paramscope.cli.export_cmd", "write the state_dict as .pt or .safetensors"),
    "diff": ("paramscope.cli.diff_cmd", "compare two models or checkpoints tensor by tensor"),
    "series": ("paramscope.cli.series_cmd", "how each tensor and module moved over a run's checkpoints"),
    "audit": ("paramscope.cli.audit_cmd", "statistics and histograms of every tensor, here or on a Dask cluster"),
    "desktop": ("paramscope.cli.desktop_cmd", "add the window to the desktop's menu and open checkpoints from the file manager"),
    "cache": ("paramscope.cli.cache_cmd", "where ranges read from URLs are cached, how much; clear it"),
    "bench": ("paramscope.cli.bench_cmd", "measure speed against plain torch/numpy baselines"),
}


def _window_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<8} {text}" for name, (_, text) in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="paramscope",
        description="Explore the parameters of PyTorch models.",
        epilog=f"subcommands (paramscope COMMAND --help):\n{lines}\n\n"
        "SOURCE is demo:NAME, FILE.py:NAME, package.module:NAME or a checkpoint file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        nargs="*",
        help="what to open (default: demo:mlp); two or more checkpoints open as a series (as --series)",
    )
    parser.add_argument(
        "--series",
        nargs="+",
        metavar="CKPT",
        help="open the Series view on a run's checkpoints (a glob, a folder, files or URLs) and its latest as the model",
    )
    parser.add_argument("--weights", metavar="FILE", help="load this state_dict into the model")
    parser.add_argument(
        "--strip-prefix",
        metavar="auto|PREFIX",
        help="with --weights: strip PREFIX (e.g. 'module.') from its keys; auto: the key change the report suggests",
    )
    add_entry_arguments(parser)
    parser.add_argument("--trust", action="store_true", help="allow files that can run code (pickled modules, .pt2)")
    parser.add_argument("--screenshot", metavar="PNG", help="render the window to PNG and exit")
    add_cache_arguments(parser)
    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    return parser


def _run_window(argv: Sequence[str]) -> int:
    args = _window_parser().parse_args(argv)
    apply_cache_arguments(args)
    from paramscope.gui.app.launch import (
        launch,  # imports only Qt: a splash shows while torch loads
    )

    options = {"strip_prefix": args.strip_prefix, "entry": args.entry, "weights_entry": args.weights_entry}
    series = (args.series or []) + (args.source if len(args.source) > 1 or args.series else [])
    if series and (args.weights or args.screenshot):
        raise ParamscopeError("--series (or several sources) opens a run's checkpoints: without --weights or --screenshot")
    source = args.source[0] if len(args.source) == 1 and not args.series else "demo:mlp"
    return launch(source, weights=args.weights, trust=args.trust, screenshot=args.screenshot, options=options, series=series or None)


def _run_subcommand(name: str, argv: Sequence[str]) -> int:
    module_name, text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"paramscope {name}", description=text)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    apply_cache_arguments(args)
    return int(module.run(args))


def one_torch_thread() -> None:
    """Ask torch for one intra-op thread before it loads (it reads OMP_NUM_THREADS at start).

    A second OpenMP thread made statistics several times slower whenever another process ran
    (GPT-2 inspect: 6.8 s with two threads, 2.6 s with one). A value the user set wins.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _escape_unencodable_output() -> None:
    """Names read from files may hold what the terminal's encoding cannot (a lone surrogate
    from a pickle): print them escaped (``\\ud800``) instead of failing halfway through."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    one_torch_thread()
    _escape_unencodable_output()
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _run_subcommand(argv[0], argv[1:])
        return _run_window(argv)
    except ParamscopeError as exc:
        print(f"paramscope: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        print("paramscope: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback in the user's face
        print(f"paramscope: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
