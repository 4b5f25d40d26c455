"""Keys that differ from the model's by a known pattern: a wrapper's prefix, PEFT's adapter name.

``DataParallel``/DDP saves ``module.fc.weight``, ``torch.compile`` saves ``_orig_mod.fc.weight``, a
Lightning module ``model.fc.weight``; a bare model wants ``fc.weight``. A PEFT adapter file stores
``...q_proj.lora_A.weight`` where the PEFT model has ``...q_proj.lora_A.default.weight`` (PEFT
inserts the adapter name when it loads). :func:`suggest_mapping` finds the one change that makes
the most keys match; :class:`KeyMapping` applies it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import torch

# Enough unmatched keys to tell the pattern; a checkpoint's keys repeat it in every layer.
SAMPLE = 2000


@dataclass(frozen=True)
class KeyMapping:
    """One change to a file's keys: strip a prefix, add one, or insert a name after a part."""

    strip: str = ""
    add: str = ""
    insert: str = ""  # the name inserted (PEFT's adapter name) ...
    after: frozenset[str] = frozenset()  # ... after each of these dotted parts

    def apply(self, key: str) -> str:
        if self.strip and key.startswith(self.strip):
            key = key[len(self.strip) :]
        if self.insert:
            parts = key.split(".")
            out = []
            for i, part in enumerate(parts):
                out.append(part)
                if part in self.after and i + 1 < len(parts) and parts[i + 1] != self.insert:
                    out.append(self.insert)
            key = ".".join(out)
        return self.add + key

    def describe(self) -> str:
        if self.strip:
            return f"stripping {self.strip!r}"
        if self.add:
            return f"adding the prefix {self.add!r}"
        return f"inserting the adapter name {self.insert!r} after {', '.join(sorted(self.after))}"

    @property
    def option(self) -> str:
        """The command-line words that ask for it."""
        return f"--strip-prefix {self.strip}" if self.strip else "--strip-prefix auto"


def remap(tensors: dict[str, torch.Tensor], mapping: KeyMapping) -> dict[str, torch.Tensor]:
    return {mapping.apply(key): value for key, value in tensors.items()}


def _matches(mapping: KeyMapping, file_keys: Iterable[str], model_keys: Collection[str]) -> int:
    return sum(mapping.apply(key) in model_keys for key in file_keys)


def _candidates(model_keys: set[str], file_keys: list[str]) -> Counter[KeyMapping]:
    found: Counter[KeyMapping] = Counter()
    file_set = set(file_keys)
    for key in [k for k in file_keys if k not in model_keys][:SAMPLE]:
        for i, char in enumerate(key):
            if char == "." and key[i + 1 :] in model_keys:
                found[KeyMapping(strip=key[: i + 1])] += 1
    inserts: dict[str, set[str]] = {}
    for key in [k for k in model_keys if k not in file_set][:SAMPLE]:
        for i, char in enumerate(key):
            if char == "." and key[i + 1 :] in file_set:
                found[KeyMapping(add=key[: i + 1])] += 1
        parts = key.split(".")
        for j in range(1, len(parts) - 1):  # one part fewer: an inserted adapter name
            if ".".join(parts[:j] + parts[j + 1 :]) in file_set:
                inserts.setdefault(parts[j], set()).add(parts[j - 1])
    for name, after in inserts.items():
        found[KeyMapping(insert=name, after=frozenset(after))] += len(after)
    return found


def suggest_mapping(model_keys: Collection[str], file_keys: Collection[str]) -> KeyMapping | None:
    """The one key change under which more of ``file_keys`` match ``model_keys``, if any.

    Example:
        >>> suggest_mapping({"fc.weight", "fc.bias"}, ["module.fc.weight", "module.fc.bias"])
        KeyMapping(strip='module.', add='', insert='', after=frozenset())
    """
    models = set(model_keys)
    files = list(file_keys)
    now = _matches(KeyMapping(), files, models)
    if now == len(files) and now == len(models):
        return None
    best, best_count = None, now
    for mapping, _ in _candidates(models, files).most_common(8):
        count = _matches(mapping, files, models)
        if count > best_count:
            best, best_count = mapping, count
    return best
