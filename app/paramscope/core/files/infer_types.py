"""Module types guessed from a checkpoint's tensor names and shapes, for a file without code.

A state_dict holds no classes, so every container of a checkpoint opened without code is a
``StateDictModule``; a tree of that name on every row tells a user nothing. The tensors a
container holds directly usually say what it was: ``weight [out, in]`` with ``bias [out]`` is a
Linear, ``weight [out, in, kh, kw]`` a Conv2d, ``running_mean`` / ``running_var`` a BatchNorm, a
1-D ``weight`` under ``ln_f`` or ``norm`` a LayerNorm, ``weight [num, dim]`` under ``wte`` an
Embedding. These are guesses (shown as such); the class stays ``StateDictModule``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from torch import nn

from paramscope.core.tasks import TaskState, steps

INFERRED_ATTRIBUTE = "_paramscope_inferred_type"  # set on a container; read by the report
EMBEDDING_HINT = re.compile(r"(^|_)(embed\w*|embeddings?|wte|wpe|tok\w*|pos\w*emb\w*|emb)$", re.IGNORECASE)
NORM_HINT = re.compile(r"(^|_)(ln\w*|\w*norm\w*|layernorm)$|^(ln|norm)_?\d*$", re.IGNORECASE)
LINEAR_HINT = re.compile(r"(head|proj\w*|fc\d*|linear\w*|dense|classifier|out|lin\d*|[qkvo]_?proj|query|key|value)$", re.IGNORECASE)
RMS_HINT = re.compile(r"rms", re.IGNORECASE)

Shapes = Mapping[str, tuple[int, ...] | None]  # own tensor name -> shape (None: lazy)


def infer_type(local_name: str, shapes: Shapes) -> str | None:
    """What a container named ``local_name`` holding tensors of these shapes probably was.

    Example:
        >>> infer_type("fc", {"weight": (3, 4), "bias": (3,)})
        'Linear(in_features=4, out_features=3)'
        >>> infer_type("wte", {"weight": (50257, 768)})
        'Embedding(50257, 768)'
        >>> infer_type("blocks", {}) is None
        True
    """
    if any(shape is None for shape in shapes.values()):
        return None  # a lazy tensor: no shape to read
    weight, bias = shapes.get("weight"), shapes.get("bias")
    if "running_mean" in shapes and "running_var" in shapes:
        size = _first_dim(shapes["running_mean"])
        affine = "" if weight is not None else ", affine=False"
        return f"BatchNorm({size}{affine})" if size is not None else None
    if weight is None or set(shapes) - {"weight", "bias"}:
        return None
    if bias is not None and len(bias) != 1:
        return None
    if len(weight) == 1:
        return _norm(local_name, weight[0], bias)
    if len(weight) == 2:
        return _matrix(local_name, weight, bias)
    if 3 <= len(weight) <= 5 and (bias is None or bias[0] == weight[0]):
        out_channels, in_channels, *kernel = weight
        size = kernel[0] if len(set(kernel)) == 1 else tuple(kernel)
        no_bias = ", bias=False" if bias is None else ""
        return f"Conv{len(kernel)}d({in_channels}, {out_channels}, kernel_size={size}{no_bias})"
    return None


def _first_dim(shape: tuple[int, ...] | None) -> int | None:
    return shape[0] if shape is not None and len(shape) == 1 else None


def _norm(local_name: str, size: int, bias: tuple[int, ...] | None) -> str | None:
    if bias is not None and bias[0] != size:
        return None
    if bias is None and not NORM_HINT.search(local_name):
        return None  # a lone 1-D weight could be anything; weight and bias of one size: a norm's affine
    if bias is None and RMS_HINT.search(local_name):
        return f"RMSNorm({size})"
    return f"LayerNorm({size}{'' if bias is not None else ', bias=False'})"


def _matrix(local_name: str, weight: tuple[int, ...], bias: tuple[int, ...] | None) -> str | None:
    rows, columns = weight
    if bias is None and EMBEDDING_HINT.search(local_name):
        return f"Embedding({rows}, {columns})"
    if bias is None and not LINEAR_HINT.search(local_name):  # the same [num, dim] either way
        return f"Linear(in_features={columns}, out_features={rows}, bias=False) or Embedding({rows}, {columns})"
    if bias is None or bias[0] == rows:
        return f"Linear(in_features={columns}, out_features={rows}{'' if bias is not None else ', bias=False'})"
    if bias[0] == columns:  # transformers' Conv1D keeps the weight as [in, out] (GPT-2)
        return f"Conv1D(nf={columns}, nx={rows})"
    return None


def kind_of(inferred: str) -> str:
    """The class part of an inferred type: ``"Linear"`` for ``"Linear(in_features=4, ...)"``,
    ``"Linear or Embedding"`` when the shapes fit both."""
    return " or ".join(part.partition("(")[0] for part in inferred.split(" or "))


def mark_inferred_types(containers: Sequence[tuple[str, nn.Module]], state: TaskState | None = None) -> int:
    """Set :data:`INFERRED_ATTRIBUTE` on each ``(qualified name, container)`` whose own tensors
    tell its type; returns how many were recognised. ``state``: progress and cancel.

    Containers of one kind repeat (every ``layers.N.mlp.fc``): a guess is made once per local
    name and shapes, then looked up.
    """
    found = 0
    guesses: dict[tuple[object, ...], str | None] = {}
    for name, module in steps(containers, len(containers), state, "guessing module types"):
        shapes: dict[str, tuple[int, ...] | None] = {}
        for local, tensor in (*module._parameters.items(), *module._buffers.items()):
            if tensor is not None:
                shapes[local] = None if isinstance(tensor, nn.parameter.UninitializedTensorMixin) else tensor.shape
        shapes.pop("num_batches_tracked", None)
        if not shapes:
            continue
        local_name = name.rpartition(".")[2]
        key = (local_name, *shapes.items())
        inferred = guesses.get(key, key)
        if inferred is key:
            inferred = guesses[key] = infer_type(local_name, shapes)
        if inferred is not None:
            module.__dict__[INFERRED_ATTRIBUTE] = inferred  # a plain attribute (Module.__setattr__ is slow)
            found += 1
    return found
