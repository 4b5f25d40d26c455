"""Which tensor a freshly opened model shows first."""

from __future__ import annotations

from paramscope.core.model.report import ModelReport, TensorInfo


def first_look_tensor(report: ModelReport) -> str | None:
    """The largest weight of the first layer: what a user looks at first.

    The first layer is the first leaf module owning a matrix (a LayerNorm's weight of ones in
    front of it would show a single bar, a container's own tensor such as a positional table
    is often all zeros); then any module owning a matrix; without matrices, the first module
    with parameters.
    Tensors without elements (lazy: nothing to plot) are passed over. The search stops at that
    layer: a checkpoint of 100,000 tensors is not walked twice on the GUI thread.
    """
    infos = report.parameters.values()

    def in_a_layer(info: TensorInfo) -> bool:
        # a leaf module: a container's own tensors (tiny_lm's zero positional table) come first
        module = report.modules.get(info.module)
        return module is None or not module.children

    def a_matrix(info: TensorInfo) -> bool:
        return info.numel > 0 and info.shape is not None and len(info.shape) >= 2

    # Each search stops at the first tensor it finds: 100,000 are not walked for each.
    first = next((i for i in infos if a_matrix(i) and in_a_layer(i)), None)
    first = first or next((i for i in infos if a_matrix(i)), None)
    first = first or next((i for i in infos if i.numel > 0), None)
    if first is None:
        return None
    module = first.module
    own = (report.parameters.get(n) for n in report.modules[module].parameters) if module in report.modules else ()
    layer = [i for i in own if i is not None and i.module == module and i.numel > 0] or [first]
    return max(layer, key=lambda i: i.numel).name
