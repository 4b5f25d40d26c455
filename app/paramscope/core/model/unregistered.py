"""Tensors a model holds where torch does not look: plain tensor attributes, modules or tensors
in plain lists and dicts, and quantized weights packed for a kernel.

``parameters()``, ``state_dict()`` and ``.to()`` skip all of them, so a model can lose or strand
them silently; :func:`unregistered_in` finds them for the report
(:attr:`paramscope.core.model.report.ModelReport.unregistered`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import is_lazy


@dataclass(frozen=True)
class Unregistered:
    """A tensor (or module) attribute that ``parameters()``, ``state_dict()`` and ``.to()`` skip."""

    module: str
    attribute: str
    kind: str  # "tensor", "tensors in list", "modules in list", ...
    shape: tuple[int, ...] | None
    dtype: str | None
    message: str


_MODULE_INTERNALS = frozenset(
    {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training"}
)


# what every nn.Module holds (internals and hook tables): one set test each, per module
_TORCH_ATTRIBUTES = frozenset(
    name for name in vars(nn.Module()) if name in _MODULE_INTERNALS or "hook" in name
)


_IGNORED = _TORCH_ATTRIBUTES | _MODULE_INTERNALS
# values that hold no tensor, tested first: the containers of a checkpoint's 100,000 tensors hold
# their own flags and names and nothing else
_PLAIN_VALUES = frozenset({str, int, float, bool, type(None)})


def _holds_tensors(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None or next(module.buffers(), None) is not None


def unregistered_in(
    module_name: str, module: nn.Module, registered: frozenset[int] = frozenset()
) -> Iterator[Unregistered]:
    """Plain attributes ``.to()`` and ``state_dict()`` skip. ``registered``: ids of every
    parameter, buffer and module of the model: a reference to one of those (an LSTM's
    ``_flat_weights``) is not unregistered, nor is a module without tensors (a kernel table)."""
    where = module_name or "(root)"
    for attribute, value in vars(module).items():
        if type(value) in _PLAIN_VALUES or attribute in _IGNORED or "hook" in attribute:
            continue
        if isinstance(value, torch.Tensor) and id(value) in registered:
            continue
        if attribute == "_packed_params" and callable(getattr(module, "_weight_bias", None)):
            yield _packed(module_name, attribute, module)
            continue
        if isinstance(value, torch.Tensor):
            yield Unregistered(
                module_name,
                attribute,
                "tensor",
                _shape(value),
                _dtype_name(value),
                f"{where}.{attribute} is a plain tensor, not a Parameter or buffer: "
                "parameters(), state_dict() and .to() skip it",
            )
        elif isinstance(value, list | tuple | dict):
            items = list(value.values()) if isinstance(value, dict) else list(value)
            modules = [
                v for v in items
                if isinstance(v, nn.Module) and id(v) not in registered and _holds_tensors(v)
            ]
            tensors = [v for v in items if isinstance(v, torch.Tensor) and id(v) not in registered]
            if modules:
                container = "nn.ModuleDict" if isinstance(value, dict) else "nn.ModuleList"
                yield Unregistered(
                    module_name,
                    attribute,
                    f"modules in {type(value).__name__}",
                    None,
                    None,
                    f"{where}.{attribute} holds {len(modules)} module(s) in a plain "
                    f"{type(value).__name__}: their parameters are not registered (use {container})",
                )
            if tensors:
                container = "nn.ParameterDict" if isinstance(value, dict) else "nn.ParameterList"
                yield Unregistered(
                    module_name,
                    attribute,
                    f"tensors in {type(value).__name__}",
                    None,
                    None,
                    f"{where}.{attribute} holds {len(tensors)} tensor(s) in a plain "
                    f"{type(value).__name__}: not registered (use {container} or register_buffer)",
                )


def _packed(module_name: str, attribute: str, module: nn.Module) -> Unregistered:
    """Quantized weights packed for a kernel (``quantize_dynamic``'s Linear, quantized convs):
    no parameter or buffer holds them, so they are shown here, with their int8 values' range,
    scale and zero point (export refuses them: see ``files.export``)."""
    where = f"{module_name or '(root)'}.{attribute}"
    try:
        weight, bias = module._weight_bias()  # type: ignore[operator]
        values = weight.int_repr()
        if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            scale = f"scale {weight.q_scale():.6g}, zero point {weight.q_zero_point()}"
        else:
            scales = weight.q_per_channel_scales()
            scale = f"per-channel scales {float(scales.min()):.6g}..{float(scales.max()):.6g}"
        bias_text = "" if bias is None else f", float bias {list(bias.shape)}"
        message = (
            f"{where} holds packed {_dtype_name(weight)} weights {list(weight.shape)} "
            f"(int values {int(values.min())}..{int(values.max())}, {scale}){bias_text}: not "
            "parameters, so parameters() and the counts leave them out; export refuses them"
        )
        return Unregistered(module_name, attribute, "packed weights", tuple(weight.shape), _dtype_name(weight), message)
    except Exception as exc:  # an unknown packing: still say it is there
        message = f"{where} holds packed weights paramscope cannot read ({type(exc).__name__})"
        return Unregistered(module_name, attribute, "packed weights", None, None, message)


def _shape(tensor: torch.Tensor) -> tuple[int, ...] | None:
    return None if is_lazy(tensor) else tuple(tensor.shape)


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
