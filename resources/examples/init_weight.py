"""The parameters tutorial's custom initializer, as a paramscope example.

Half of the weights (in expectation) become 0, the others are uniform on [-10, -5] or [5, 10].
paramscope calls ``init_weight_(tensor, generator)`` with the request's seeded generator, so a
seed repeats it; ``generator=None`` keeps the tutorial's ``init_weight_(tensor)`` call working.

Use it from the command line:  paramscope init demo:mlp --rule '*.weight=init_weight.py:init_weight_'
"""

import torch


def init_weight_(tensor, generator=None):
    with torch.no_grad():
        tensor.uniform_(-10, 10, generator=generator)
        tensor *= (tensor.abs() >= 5).float()
    return tensor
