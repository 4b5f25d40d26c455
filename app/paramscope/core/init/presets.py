"""Named initialization recipes ("presets") as rule texts the user reads and edits before applying.

Each preset turns a model into a list of ``SELECTOR=INIT(...)`` rules (see
:mod:`paramscope.core.init.rules`) plus ``#`` comments saying where each number came from. Nothing is
applied here: ``paramscope presets NAME SOURCE`` prints the rules (a file ``init --rules-file``
reads back), ``paramscope init SOURCE --preset NAME --dry-run`` lists the tensors they hit.
A rule that would hit nothing in this model is left out with a comment, so a preset never fails
on a model without, say, LayerNorm.

Presets and their sources:

- ``gpt2``: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", §2.3;
  code: openai/gpt-2 ``src/model.py`` (normal, std 0.02), huggingface/transformers
  ``GPT2PreTrainedModel._init_weights`` and karpathy/nanoGPT ``model.py`` (residual projections
  ``c_proj.weight`` with std ``0.02/sqrt(2*n_layer)``).
- ``bert``: Devlin et al. 2019; google-research/bert ``modeling.py`` ``create_initializer``
  (``tf.truncated_normal_initializer(stddev=0.02)``, which redraws beyond 2 std) and
  transformers ``BertPreTrainedModel._init_weights`` (LayerNorm weight 1, bias 0; biases 0).
- ``pytorch``: each module's own ``reset_parameters()`` (torch/nn/modules; e.g. Linear:
  ``kaiming_uniform_(a=sqrt(5))`` and a bias uniform in ±1/sqrt(fan_in)).
- ``fixup``: Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
  Normalization" (ICLR, arXiv:1901.09321), rule 2: the last layer of each residual branch
  starts at 0, so every block starts as the identity (also Goyal et al. 2017's zero-γ and
  torchvision's ``zero_init_residual``). Only that step: Fixup's rescaling of the branch's other
  layers by ``L^(-1/(2m-2))`` and its scalar biases are not applied.
- ``mup``: Yang et al. 2021, "Tensor Programs V" (arXiv:2203.03466), Table 3; code:
  microsoft/mup ``mup/init.py`` (hidden weights' std divided by sqrt(width_mult)) and
  ``MuReadout`` (readout zero init). Only the initialization part of muP (not its learning
  rates or output multiplier).
- ``lsuv``: Mishkin & Matas 2016 (see :mod:`paramscope.core.init.lsuv`); needs an input.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from paramscope.core.edit.replay import format_value
from paramscope.core.errors import ParamscopeError, RuleError
from paramscope.core.init.initializer_base import ParamSpec
from paramscope.core.model.fans import connection_fans
from paramscope.core.model.report import ModelReport

# Local names of the layers that end a residual branch: GPT-2 (attn.c_proj, mlp.c_proj),
# torch.nn.TransformerEncoderLayer (self_attn.out_proj, linear2), LLaMA (o_proj, down_proj),
# ViT/OPT (fc2). A preset argument, so other models name theirs.
RESIDUAL_LAYERS = "c_proj|out_proj|linear2|o_proj|down_proj|fc2"


class PresetError(ParamscopeError):
    """An unknown preset or a bad preset argument."""


@dataclass
class PresetRules:
    """A preset made concrete for one model: rules in order, and comments saying why."""

    preset: str
    rules: list[str]
    comments: list[str] = field(default_factory=list)

    def text(self) -> str:
        """A rules file: ``#`` comments, then one rule per line (``init --rules-file`` reads it)."""
        lines = [f"# {c}" for c in self.comments]
        return "\n".join(lines + self.rules) + "\n"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    source: str
    params: tuple[ParamSpec, ...]
    build: Callable[[nn.Module, ModelReport, dict[str, Any]], PresetRules]
    description: str = ""


def _hits(rule: str, model: nn.Module, report: ModelReport) -> int:
    from paramscope.core.init.rule_parse import parse_rule
    from paramscope.core.init.selectors import resolve_targets

    return len(resolve_targets(report, parse_rule(rule).selector, model))


def _selector_hits(selector: str, model: nn.Module, report: ModelReport) -> int:
    from paramscope.core.init.selectors import parse_selector, resolve_targets

    return len(resolve_targets(report, parse_selector(selector), model))


def _kept(preset: str, rules: list[str], comments: list[str], model: nn.Module, report: ModelReport) -> PresetRules:
    """The rules that hit something in this model; the others become comments (the experts' rule
    silently: most models have none)."""
    kept: list[str] = []
    for rule in rules:
        if _hits(rule, model, report):
            kept.append(rule)
        elif not rule.startswith(f"{EXPERTS}="):
            comments.append(f"left out (hits nothing in this model): {rule}")
    return PresetRules(preset, kept, comments)


def _config_int(model: nn.Module, *names: str) -> int | None:
    config = getattr(model, "config", None)
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _residual_selector(residual: str, tensor: str = "weight") -> str:
    """The residual projections' weights: ``o_proj.weight``, and a mixture of experts' stacked
    ``experts.down_proj`` (a parameter of that name, no ``.weight``)."""
    if tensor == "weight":
        return rf"re:(^|\.)({residual})(\.weight)?$"
    return rf"re:(^|\.)({residual})\.{tensor}$"


# A mixture of experts' matrices stacked in 3-D parameters (transformers 5's MixtralExperts,
# Qwen3MoeExperts, ...) are named gate_up_proj and down_proj: "weights" ('weight' in the name)
# missed them, most of such a model's parameters.
EXPERTS = "type:*Experts"


# Norm layers' gain 1 and shift 0, then every bias 0 (a later rule overwrites an earlier one). A
# glob on the class, not type:LayerNorm: RMSNorm (LlamaRMSNorm, T5LayerNorm's kin) derives from no
# torch norm, has no reset_parameters, and under "weights" its gains were drawn near 0.
NORM_RULES = ("type:*Norm*=ones", "biases=zeros")


def _gpt2(model: nn.Module, report: ModelReport, args: dict[str, Any]) -> PresetRules:
    std, residual = args["std"], args["residual"]
    comments = [f"gpt2: normal(0, {std:g}) weights, zero biases, norm layers 1/0; residual projections "
                "scaled by 1/sqrt(2 x n_layers) (Radford et al. 2019 §2.3; openai/gpt-2, nanoGPT)"]  # fmt: skip
    n_layers = args["n_layers"] or _config_int(model, "n_layer", "num_hidden_layers", "num_layers")
    if n_layers:
        comments.append(f"n_layers={n_layers}" + ("" if args["n_layers"] else " (from the model's config)"))
    else:
        projections = _selector_hits(_residual_selector(residual), model, report)
        n_layers = max(1, math.ceil(projections / 2))
        comments.append(f"n_layers={n_layers}: {projections} residual projection(s) matching {residual!r}, two per block")
    scaled = std / math.sqrt(2 * n_layers)
    drawn = f"normal(mean=0.0,std={format_value(std)})"
    rules = [
        f"weights={drawn}",
        f"{EXPERTS}={drawn}",
        *NORM_RULES,
        f"{_residual_selector(residual)}=normal(mean=0.0,std={format_value(scaled)})",
    ]
    return _kept("gpt2", rules, comments, model, report)


def _bert(model: nn.Module, report: ModelReport, args: dict[str, Any]) -> PresetRules:
    std = args["std"]
    comments = [f"bert: truncated normal(0, {std:g}) cut at 2 std, zero biases, norm layers weight 1 bias 0 "
                "(google-research/bert create_initializer; transformers BertPreTrainedModel)"]  # fmt: skip
    drawn = f"trunc_normal(mean=0.0,std={format_value(std)},a={format_value(-2 * std)},b={format_value(2 * std)})"
    rules = [f"weights={drawn}", f"{EXPERTS}={drawn}", *NORM_RULES]
    return _kept("bert", rules, comments, model, report)


def _pytorch(model: nn.Module, report: ModelReport, args: dict[str, Any]) -> PresetRules:
    comments = ["pytorch: every module's own reset_parameters(), as a freshly built model has them"]
    types: list[type] = []
    without: list[str] = []
    for info in report.parameters.values():
        owner = model.get_submodule(info.name.rpartition(".")[0])
        if callable(getattr(owner, "reset_parameters", None)):
            if type(owner) not in types:
                types.append(type(owner))
        else:
            without.append(f"{info.name} ({type(owner).__name__})")
    if without:
        comments.append("left as they are (the owner has no reset_parameters()): " + ", ".join(without))
    # type:Linear also hits its subclasses: a subclass of a listed type needs no rule of its own
    kept = [t for t in types if not any(o is not t and issubclass(t, o) for o in types)]
    return _kept("pytorch", [f"type:{t.__name__}=default" for t in kept], comments, model, report)


def _fixup(model: nn.Module, report: ModelReport, args: dict[str, Any]) -> PresetRules:
    residual = args["residual"]
    comments = [
        "fixup: the last layer of each residual branch starts at 0 (Zhang, Dauphin & Ma 2019, rule 2)",
        f"residual branches end in layers named {residual!r}; edit the regex for other models",
        "not applied: Fixup's L^(-1/(2m-2)) rescaling of the other branch layers and its scalar biases",
    ]
    rules = [f"{_residual_selector(residual)}=zeros", f"{_residual_selector(residual, 'bias')}=zeros"]
    return _kept("fixup", rules, comments, model, report)


def _inferred_width(model: nn.Module) -> tuple[int, str]:
    from_config = _config_int(model, "hidden_size", "n_embd", "d_model", "dim")
    if from_config:
        return from_config, "from the model's config"
    widths = Counter(m.in_features for m in model.modules() if isinstance(m, nn.Linear))
    if not widths:
        raise PresetError("preset mup: no Linear layer to infer the width from; pass width=N")
    width = max(widths, key=lambda w: (widths[w], w))
    return width, "the most common in_features of the Linear layers"


def _mup(model: nn.Module, report: ModelReport, args: dict[str, Any]) -> PresetRules:
    from torch.nn import init as torch_init

    base, std = args["base_width"], args["std"]
    if base <= 0:
        raise PresetError("preset mup: base_width must be a positive integer (the width the std was tuned at)")
    width, why = (args["width"], "given") if args["width"] else _inferred_width(model)
    mult = width / base
    units = _width_units(model, width)
    kv = f" or of {units[1]} (the key/value width of grouped-query attention)" if len(units) > 1 else ""
    comments = [
        "mup: init part of muP (Yang et al. 2021, Tensor Programs V, Table 3; microsoft/mup)",
        f"width={width} ({why}), base_width={base}: width_mult={mult:g}; a dimension scales with width "
        f"when it is a multiple of {width}{kv}",
        f"input weights (embeddings, fan_in not scaling): std {std:g}; hidden: std {std:g}/sqrt(width_mult); "
        f"readout (fan_out not scaling): {'zero' if args['readout'] == 'zero' else f'std {std:g}/width_mult'}; biases 0",
    ]
    groups: dict[str, list[str]] = {}
    readout = _output_layer(model)  # a vocabulary of 32,000 is a multiple of a width of 64
    for info in report.parameters.values():
        if info.shape is None or len(info.shape) < 2:
            continue
        owner = model.get_submodule(info.name.rpartition(".")[0])
        stacked = connection_fans(owner, model.get_parameter(info.name)) if len(info.shape) == 3 else None
        if stacked is None and "weight" not in info.name.rpartition(".")[2]:
            continue
        # (stacked experts: each expert's matrix, not torch's reading of the 3-D tensor as a conv's)
        fan_in, fan_out = (
            (stacked.fan_in, stacked.fan_out) if stacked is not None
            else torch_init._calculate_fan_in_and_fan_out(model.get_parameter(info.name))
        )
        if isinstance(owner, nn.Embedding) or not any(fan_in % unit == 0 for unit in units):
            init = f"normal(mean=0.0,std={format_value(std)})"
        elif owner is readout or not any(fan_out % unit == 0 for unit in units):
            init = "zeros" if args["readout"] == "zero" else f"normal(mean=0.0,std={format_value(std / mult)})"
        else:
            init = f"normal(mean=0.0,std={format_value(std / math.sqrt(mult))})"
        groups.setdefault(init, []).append(info.name)
        if len(info.aliases) > 1:
            comments.append(f"{info.name} is tied to {', '.join(info.aliases[1:])}: one init for all")
    rules = [f"re:^({'|'.join(re.escape(n) for n in names)})$={init}" for init, names in groups.items()]
    rules.append("biases=zeros")
    return _kept("mup", rules, comments, model, report)


def _output_layer(model: nn.Module) -> nn.Module | None:
    """A transformers model's output layer (``get_output_embeddings()``: its lm_head), if any."""
    try:
        layer = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    except Exception:  # a model whose method needs what it was not built with
        return None
    return layer if isinstance(layer, nn.Module) else None


def _width_units(model: nn.Module, width: int) -> list[int]:
    """The widths a dimension is a multiple of when it scales: the model's, and with grouped-query
    attention (Llama, Mistral) that of the keys and values, num_key_value_heads x head_dim, a
    fraction of it (taken for a readout's fan-out, k_proj and v_proj were drawn width_mult times
    too small)."""
    kv_heads = _config_int(model, "num_key_value_heads")
    heads = _config_int(model, "num_attention_heads")
    head_dim = _config_int(model, "head_dim") or (width // heads if heads else None)
    kv = kv_heads * head_dim if kv_heads and head_dim else None
    return [width, kv] if kv and kv != width else [width]


def _lsuv(model: nn.Module, report: ModelReport, args: dict[str, Any]) -> PresetRules:
    comments = ["lsuv: orthogonal, then each layer rescaled to unit output std on the input "
                "(Mishkin & Matas 2016); 1-D weights (norm scales) are refused and left as they are"]  # fmt: skip
    parts = [f"tol={format_value(args['tol'])}"] + ([f"input={args['input']!r}"] if args["input"] else [])
    return _kept("lsuv", [f"weights=lsuv({','.join(parts)})"], comments, model, report)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("gpt2", "GPT-2: normal(0, 0.02), residual projections / sqrt(2 x n_layers)",
               "Radford et al. 2019 §2.3; openai/gpt-2 src/model.py; karpathy/nanoGPT model.py",
               (ParamSpec("std", "float", 0.02), ParamSpec("n_layers", "int", 0),
                ParamSpec("residual", "str", RESIDUAL_LAYERS)), _gpt2,
               "n_layers=0: from the model's config, else half the residual projections found"),
        Preset("bert", "BERT: truncated normal(0, 0.02), norm layers 1/0, biases 0",
               "Devlin et al. 2019; google-research/bert modeling.py create_initializer",
               (ParamSpec("std", "float", 0.02),), _bert),
        Preset("pytorch", "PyTorch defaults: every module's reset_parameters()",
               "torch.nn modules' reset_parameters()", (), _pytorch),
        Preset("fixup", "Fixup-style: the last layer of each residual branch set to zero",
               "Zhang, Dauphin & Ma 2019 (arXiv:1901.09321), rule 2",
               (ParamSpec("residual", "str", RESIDUAL_LAYERS),), _fixup,
               "residual: regex of the local names of the layers that end a residual branch"),
        Preset("mup", "muP-style width scaling of the init given a base width",
               "Yang et al. 2021, Tensor Programs V (arXiv:2203.03466) Table 3; microsoft/mup",
               (ParamSpec("base_width", "int"), ParamSpec("width", "int", 0), ParamSpec("std", "float", 0.02),
                ParamSpec("readout", "choice", "scaled", ("scaled", "zero"))), _mup,
               "width=0: from the model's config, else the most common Linear in_features"),
        Preset("lsuv", "LSUV: data-dependent unit output variance per layer (needs --input)",
               "Mishkin & Matas 2016, All you need is a good init (arXiv:1511.06422)",
               (ParamSpec("tol", "float", 0.05), ParamSpec("input", "str", "")), _lsuv),
    )
}  # fmt: skip


def parse_preset(text: str) -> tuple[Preset, dict[str, Any]]:
    """``NAME`` or ``NAME(key=value,...)`` -> the preset and its checked arguments.

    Example:
        >>> parse_preset("mup(base_width=32)")[1]["base_width"]
        32
    """
    from paramscope.core.init.rule_parse import parse_arguments

    match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*", text, re.DOTALL)
    if not match:
        raise PresetError(f"preset {text!r}: expected NAME or NAME(key=value,...)")
    name, arg_text = match.group(1), match.group(2) or ""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    try:
        positional, keywords = parse_arguments(arg_text, text)
    except RuleError as exc:
        raise PresetError(str(exc).replace("rule ", "preset ", 1)) from exc
    specs = {p.name: p for p in preset.params}
    for spec, value in zip(preset.params, positional, strict=False):
        keywords.setdefault(spec.name, value)
    args: dict[str, Any] = {}
    for key in keywords:
        if key not in specs:
            raise PresetError(f"preset {name}: no argument {key!r} (accepts: {', '.join(specs) or 'none'})")
    for spec in preset.params:
        if spec.name in keywords:
            try:
                args[spec.name] = spec.coerce(keywords[spec.name])
            except ValueError as exc:
                raise PresetError(f"preset {name}: {exc}") from exc
        elif spec.required:
            raise PresetError(f"preset {name} needs {spec.name}=... ({preset.description or preset.title})")
        else:
            args[spec.name] = spec.default
    return preset, args


def preset_rules(text: str, model: nn.Module, report: ModelReport) -> PresetRules:
    """The rules preset ``text`` (``gpt2``, ``mup(base_width=32)``) gives for this model."""
    preset, args = parse_preset(text)
    result = preset.build(model, report, args)
    result.comments.insert(0, f"preset {text.strip()} — source: {preset.source}")
    return result


def read_rules_file(text: str) -> list[str]:
    """Rules from a rules file: one per line; blank lines and ``#`` comments are skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
