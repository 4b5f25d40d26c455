"""Read a pickle's structure without running anything from it.

:func:`scan_pickle` unpickles with a ``find_class`` that never imports: every global the pickle
names becomes an inert stand-in, so ``__reduce__`` tricks only construct stand-ins. What comes
out is the list of globals the pickle wants and the storages it declares (torch's persistent ids),
so sizes can be checked before torch allocates anything.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import IO, Any

# bytes per element for torch's typed storage class names (legacy and zip format ids)
_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
    "BoolStorage": 1, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8,
    "UntypedStorage": 1, "QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4,
    "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
}

# globals a plain state_dict pickle uses; anything else is named in the refusal message
_PLAIN = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset")


@dataclass
class StorageDecl:
    key: str
    type_name: str
    numel: int

    @property
    def nbytes(self) -> int:
        size = _STORAGE_ITEMSIZE.get(self.type_name)
        if size is None:  # float8 and friends are 1 byte; unknown ones: assume the widest
            size = 1 if "Float8" in self.type_name else 16
        return max(0, self.numel) * size


@dataclass
class PickleScan:
    globals: list[str] = field(default_factory=list)
    storages: dict[str, StorageDecl] = field(default_factory=dict)
    top_level: Any = None  # the stand-in structure (dicts, lists, stand-ins)

    @property
    def declared_bytes(self) -> int:
        return sum(s.nbytes for s in self.storages.values())

    @property
    def code_globals(self) -> list[str]:
        """Globals outside torch and the containers a state_dict uses: classes or functions."""
        return [g for g in self.globals if not g.startswith(_PLAIN)]


class _Inert:
    """What every global becomes: calling, building or setting state only records data."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:  # getattr(...)(...) chains
        return _Inert(*args)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # OrderedDict stand-ins get SETITEMS
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("list", []).extend(values)

    @classmethod
    def __class_getitem__(cls, item: Any) -> Any:
        return cls


# The pure-Python unpickler: damaged bytes cannot make it allocate what they claim (the C one
# grows its memo to any index a LONG_BINPUT names, which let a flipped bit exhaust memory).
class _ScanUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    def __init__(self, stream: IO[bytes], scan: PickleScan) -> None:
        super().__init__(stream)
        self._scan = scan
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified not in self._scan.globals:
            self._scan.globals.append(qualified)
        if qualified not in self._classes:
            # a fresh inert class per global, never the real object
            self._classes[qualified] = type(name, (_Inert,), {"_qualname": qualified})
        return self._classes[qualified]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            type_name = getattr(pid[1], "_qualname", str(pid[1])).rpartition(".")[2]
            key = str(pid[2])
            numel = pid[4] if isinstance(pid[4], int) else 0
            self._scan.storages[key] = StorageDecl(key, type_name, numel)
        return _Inert(pid)


def scan_pickle(stream: IO[bytes] | bytes, scan: PickleScan | None = None) -> PickleScan:
    """Unpickle ``stream`` inertly and report globals and declared storages.

    Raises:
        pickle.UnpicklingError, EOFError, ValueError and friends when the bytes are not a pickle.

    Example:
        >>> import pickle
        >>> scan_pickle(pickle.dumps({"a": 1})).globals
        []
    """
    if isinstance(stream, bytes | bytearray):
        stream = io.BytesIO(stream)
    scan = scan if scan is not None else PickleScan()
    scan.top_level = _ScanUnpickler(stream, scan).load()
    return scan
