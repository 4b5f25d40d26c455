"""A forward's inputs for a given model: guessed from the model, and made on its device.

:func:`default_input` guesses a sample input (an :class:`~paramscope.core.backward.input_specs.InputSpec`)
from what the model's library records, else from its first layer with parameters;
:func:`make_call_inputs` turns a spec, a tensor or tensors into the forward's arguments on the
model's device and in its float dtype. The spec grammar itself is
:mod:`paramscope.core.backward.input_specs`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from paramscope.core.backward.input_specs import InputSpec, TensorItem, parse_input_spec
from paramscope.core.model.tensor_stats import data_problem

LAZY_FALLBACK_FEATURES = 4
_SEQUENCE_LENGTH = 8
_RNN_STEPS = 5
_IMAGE_SIZE = 16


def _scripted_input(module: nn.Module) -> InputSpec | None:
    """TorchScript keeps each module's class name (``original_name``) and its weight's shape."""
    kind = getattr(module, "original_name", None)
    if not isinstance(module, torch.jit.ScriptModule) or not isinstance(kind, str):
        return None
    weight = dict(module.named_parameters(recurse=False)).get("weight")
    if weight is None or weight.dim() < 2:
        return None
    note = f"from the TorchScript {kind}'s weight {tuple(weight.shape)}"
    if kind in ("Linear", "Bilinear"):
        return InputSpec((TensorItem("rand", (2, weight.shape[-1])),), note=note)
    if kind in ("Embedding", "EmbeddingBag"):
        return InputSpec((TensorItem("randint", (2, _SEQUENCE_LENGTH), high=weight.shape[0]),), note=note)
    if kind.startswith("Conv") and not kind.startswith("ConvTranspose"):
        groups = int(getattr(module, "groups", 1) or 1)
        dims = weight.dim() - 2
        size = _IMAGE_SIZE if dims < 3 else 8
        return InputSpec((TensorItem("rand", (2, weight.shape[1] * groups) + (size,) * dims),), note=note)
    return None


def _first_module_with_parameters(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first module (registration order) that owns parameters directly, leaves first."""
    for name, module in model.named_modules():
        if module is model:
            continue
        if any(p is not None for p in module._parameters.values()):
            return name, module
    if any(p is not None for p in model._parameters.values()):
        return "", model
    return None


def default_input(model: nn.Module) -> InputSpec:
    """A sample input for ``model``: what its library says first, else its first layer's sizes.

    In order: the shapes an exported (``.pt2``) graph was traced with; a transformers model's
    ``main_input_name`` with its config's sizes; a diffusers model's config (``sample_size``,
    ``in_channels``: ``sample=...; timestep=...``); ``nn.Transformer``/``MultiheadAttention``
    at the root; then :func:`first_layer_input`. Each guess says what it was made from (``note``).
    """
    for guess in (_exported_input, _transformers_input, _diffusers_input, _attention_input):
        spec = guess(model)
        if spec is not None:
            return spec
    return first_layer_input(model)


def _spec(items: list[tuple[str | None, TensorItem]], note: str) -> InputSpec:
    keywords = tuple(key for key, _ in items)
    return InputSpec(
        tuple(item for _, item in items), note=note, keywords=keywords if any(keywords) else ()
    )


def _exported_input(model: nn.Module) -> InputSpec | None:
    """A torch.export / fx graph records each input's shape and dtype on its placeholders."""
    graph = getattr(model, "graph", None)
    if not isinstance(model, torch.fx.GraphModule) or graph is None:
        return None
    items: list[tuple[str | None, TensorItem]] = []
    for node in graph.nodes:
        if node.op != "placeholder":
            continue
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor) or not all(isinstance(n, int) for n in value.shape):
            return None  # a symbolic size or a non-tensor input: no exact shape to give
        if value.dtype.is_floating_point:
            items.append((None, TensorItem("rand", tuple(value.shape), value.dtype)))
        elif value.dtype == torch.bool:
            items.append((None, TensorItem("ones", tuple(value.shape), value.dtype)))
        else:
            items.append((None, TensorItem("randint", tuple(value.shape), value.dtype, 0, 2)))
    if not items:
        return None
    return _spec(items, "the shapes and dtypes the exported graph was traced with")


def _config_int(config: object, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, list | tuple) and value and isinstance(value[0], int):
            value = value[0]
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


_WAVEFORM_SAMPLES = 16_000


def _transformers_input(model: nn.Module) -> InputSpec | None:
    """transformers models name their main input; their config gives its sizes."""
    config = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    if config is None or not isinstance(main, str):
        return None
    items: list[tuple[str | None, TensorItem]] = []
    if main == "input_ids":
        vocab = _config_int(config, "vocab_size")
        if vocab is None:
            return None
        items.append((main, TensorItem("randint", (2, _SEQUENCE_LENGTH), high=vocab)))
        if getattr(config, "is_encoder_decoder", False):
            items.append(("decoder_input_ids", TensorItem("randint", (2, _SEQUENCE_LENGTH), high=vocab)))
        sizes = f"vocab_size {vocab}"
    elif main == "pixel_values":
        size = _config_int(config, "image_size") or 224
        channels = _config_int(config, "num_channels") or 3
        items.append((main, TensorItem("rand", (2, channels, size, size))))
        sizes = f"image_size {size}, num_channels {channels}"
    elif main == "input_features" and (mels := _config_int(config, "num_mel_bins")) and (positions := _config_int(config, "max_source_positions")):
        # Whisper: log-mel frames, two per encoder position (its first convolution has stride 2)
        items.append((main, TensorItem("rand", (2, mels, 2 * positions))))
        vocab = _config_int(config, "vocab_size")
        if getattr(config, "is_encoder_decoder", False) and vocab:
            items.append(("decoder_input_ids", TensorItem("randint", (2, _SEQUENCE_LENGTH), high=vocab)))
        sizes = f"num_mel_bins {mels}, max_source_positions {positions}"
    elif main == "input_values":  # wav2vec2, HuBERT: a raw waveform, here a second at 16 kHz
        items.append((main, TensorItem("rand", (2, _WAVEFORM_SAMPLES))))
        sizes = f"a waveform of {_WAVEFORM_SAMPLES} samples"
    else:
        return None
    return _spec(items, f"{type(model).__name__}'s main input {main} with its config's {sizes}")


def _diffusers_input(model: nn.Module) -> InputSpec | None:
    """diffusers models keep their sizes in ``config``: a noisy sample and a timestep."""
    config = getattr(model, "config", None)
    if config is None or not type(model).__module__.startswith("diffusers"):
        return None
    channels = _config_int(config, "in_channels")
    size = _config_int(config, "sample_size")
    if channels is None or size is None:
        return None
    dims = 1 if "1D" in type(model).__name__ else 3 if "3D" in type(model).__name__ else 2
    items: list[tuple[str | None, TensorItem]] = [
        ("sample", TensorItem("rand", (2, channels) + (size,) * dims)),
    ]
    if "timestep" in _forward_parameters(model):
        items.append(("timestep", TensorItem("randint", (2,), high=1000)))
    cross = _config_int(config, "cross_attention_dim")
    if cross is not None and "encoder_hidden_states" in _forward_parameters(model):
        items.append(("encoder_hidden_states", TensorItem("rand", (2, _SEQUENCE_LENGTH, cross))))
    return _spec(
        items,
        f"{type(model).__name__}'s config: in_channels {channels}, sample_size {size}"
        + (f", cross_attention_dim {cross}" if len(items) > 2 else ""),
    )


def _forward_parameters(model: nn.Module) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return ()


def _sequence(attention: nn.MultiheadAttention, features: int) -> TensorItem:
    shape = (2, _RNN_STEPS, features) if attention.batch_first else (_RNN_STEPS, 2, features)
    return TensorItem("rand", shape)


def _attention_input(model: nn.Module) -> InputSpec | None:
    """Attention at the root takes several sequences: query/key/value, or source and target."""
    if isinstance(model, nn.MultiheadAttention):
        item = _sequence(model, model.embed_dim)
        key = _sequence(model, model.kdim)
        value = _sequence(model, model.vdim)
        return _spec([(None, item), (None, key), (None, value)], "query, key and value sequences")
    if isinstance(model, nn.Transformer):
        attention = model.encoder.layers[0].self_attn
        item = _sequence(attention, attention.embed_dim)
        return _spec([(None, item), (None, item)], "source and target sequences of d_model features")
    if isinstance(model, nn.TransformerDecoder | nn.TransformerDecoderLayer):
        layer = model.layers[0] if isinstance(model, nn.TransformerDecoder) else model
        item = _sequence(layer.self_attn, layer.self_attn.embed_dim)
        return _spec([(None, item), (None, item)], "target and memory sequences of d_model features")
    return None


def first_layer_input(model: nn.Module) -> InputSpec:
    """A sensible sample input for ``model``, guessed from its first layer with parameters.

    Rules: ``Linear`` -> ``rand(2, in_features)``; ``Conv1d/2d/3d`` -> a small batch
    ``rand(2, C, 16[, 16[, 16]])``; ``Embedding`` -> token ids ``randint(2, 8, high=num_embeddings)``;
    ``LSTM/GRU/RNN`` -> a short sequence ``rand(2, 5, input_size)`` (``(5, 2, input_size)``
    without ``batch_first``); norms -> ``rand(2, num_features)``; a bare 2-D Parameter on the
    root (the tutorial's ``MyModel``) -> ``rand(2, rows)``. Lazy layers know no input size yet:
    ``rand(2, 4)`` with a note, to be edited.

    Example:
        >>> default_input(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))).text
        'rand(2, 4)'
    """
    found = _first_module_with_parameters(model)
    if found is None:
        return InputSpec(
            (TensorItem("rand", (2, LAZY_FALLBACK_FEATURES)),),
            note="the model has no parameters to infer an input from: edit the spec",
        )
    name, module = found
    where = name or "(root)"
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        return InputSpec(
            (TensorItem("rand", (2, LAZY_FALLBACK_FEATURES)),),
            note=f"{where} ({type(module).__name__}) infers its input size from the first input: "
            f"rand(2, {LAZY_FALLBACK_FEATURES}) is a guess, edit it",
        )
    if isinstance(module, nn.MultiheadAttention):  # inside a block that attends to its input
        return InputSpec(
            (_sequence(module, module.embed_dim),),
            note=f"one sequence of {module.embed_dim} features for {where} (self-attention)",
        )
    known = _scripted_input(module) or _layer_input(module)
    if known is not None:
        return known
    first = next((p for p in module._parameters.values() if p is not None), None)
    if first is not None and first.dim() >= 1:
        return InputSpec(
            (TensorItem("rand", (2, first.shape[0])),),
            note=f"guessed from {where}'s first parameter {tuple(first.shape)}: edit the spec if wrong",
        )
    return InputSpec(
        (TensorItem("rand", (2, LAZY_FALLBACK_FEATURES)),),
        note=f"cannot infer an input for {where} ({type(module).__name__}): edit the spec",
    )


_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.ConvTranspose1d: 1,
              nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}  # fmt: skip


def _layer_input(module: nn.Module) -> InputSpec | None:
    """The input a layer of a known type takes (see :func:`first_layer_input`), or None."""
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        high = module.num_embeddings
        return InputSpec((TensorItem("randint", (2, _SEQUENCE_LENGTH), high=high),))
    if isinstance(module, nn.Linear):
        return InputSpec((TensorItem("rand", (2, module.in_features)),))
    if isinstance(module, nn.Bilinear):  # two inputs: a tuple
        return InputSpec(
            (TensorItem("rand", (2, module.in1_features)), TensorItem("rand", (2, module.in2_features)))
        )
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = _CONV_DIMS.get(type(module), 2)
        size = _IMAGE_SIZE if dims < 3 else 8
        return InputSpec((TensorItem("rand", (2, module.in_channels) + (size,) * dims),))
    if isinstance(module, nn.RNNBase):
        shape = (2, _RNN_STEPS, module.input_size) if module.batch_first else (_RNN_STEPS, 2, module.input_size)
        return InputSpec((TensorItem("rand", shape),))
    if isinstance(module, nn.RNNCellBase):
        return InputSpec((TensorItem("rand", (2, module.input_size)),))
    if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.GroupNorm):
        channels = module.num_channels if isinstance(module, nn.GroupNorm) else module.num_features
        return InputSpec((TensorItem("rand", (2, channels)),))
    if isinstance(module, nn.LayerNorm) and module.normalized_shape:
        return InputSpec((TensorItem("rand", (2, *module.normalized_shape)),))
    return None


# --- inputs made for a model --------------------------------------------------------------------


def model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    """The device of the model's first tensor with data, and its first floating dtype."""
    device = torch.device("cpu")
    dtype = None
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if data_problem(tensor) is not None and not isinstance(
            tensor, nn.parameter.UninitializedTensorMixin
        ):
            continue
        device = tensor.device
        if tensor.is_floating_point():
            dtype = tensor.dtype
            break
    return device, dtype


def make_call_inputs(
    model: nn.Module,
    inputs: InputSpec | str | torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    seed: int | None,
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor], str]:
    """The forward's positional and keyword tensors (a spec's made on the model's device, floats
    in its dtype; given tensors as they are) and a description."""
    if isinstance(inputs, str):
        inputs = parse_input_spec(inputs)
    if isinstance(inputs, InputSpec):
        device, dtype = model_placement(model)
        args, kwargs = inputs.make_call(seed, device=device, float_dtype=dtype)
        return args, kwargs, inputs.text
    if isinstance(inputs, Mapping):
        kwargs = dict(inputs)
        text = "; ".join(f"{k}=tensor{list(t.shape)}" for k, t in kwargs.items())
        return (), kwargs, text
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    text = "; ".join(f"tensor{list(t.shape)}" for t in tensors)
    return tensors, {}, text
