"""``paramscope bench`` steps on files: export (atomic, verified) and lazy open.

Export is timed against ``torch.save`` / safetensors' ``save_model``, in a RAM folder where there
is one (see :func:`step_export`); opening against an eager ``torch.load`` and one plain read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from paramscope.core.bench.bench_model import distinct_parameters
from paramscope.core.bench.bench_rows import Context, Row, _finish, compare


def _quiet_disk() -> None:
    if hasattr(os, "sync"):
        os.sync()


EXPORT_DIR_VARIABLE = "PARAMSCOPE_BENCH_EXPORT_DIR"


def _memory_folder(need: int) -> Path | None:
    """A RAM-backed folder with room for ``need`` bytes (Linux's /dev/shm), or None."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > need:
            return shm
    except OSError:
        pass
    return None


#: Said on an export row over its target: the one plain verify is part of the app's time.
OVER_TARGET_NOTE = (
    "over target: the app's time includes one verify after writing (the whole file read back "
    "through a map and every tensor compared); the baseline only writes"
)


def step_export(ctx: Context) -> list[Row]:
    # The targeted rows compare software with software: on this kind of virtual disk the same
    # torch.save takes 0.3 s or 2 s depending on the disk's own state, which no ratio survives.
    # So they write to memory where there is a RAM folder (or where the variable points);
    # the --sync rows wait for the disk (the temporary folder) on both sides.
    nbytes = sum(t.numel() * t.element_size() for t in distinct_parameters(ctx.model))
    chosen = os.environ.get(EXPORT_DIR_VARIABLE)
    folder = Path(chosen) if chosen else _memory_folder(4 * nbytes)
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-", dir=folder) as where:
        return _export_rows(ctx, Path(where))


def _export_rows(ctx: Context, where: Path) -> list[Row]:
    from safetensors.torch import save_model

    from paramscope.core.files.export import state_dict_for, write_state_dict

    model = ctx.model
    rows = []
    for suffix, baseline_name in (
        (".pt", "torch.save"),
        (".safetensors", "safetensors save_model"),
    ):

        def app(folder: Path, sync: bool = False, suffix: str = suffix) -> None:
            write_state_dict(state_dict_for(model), folder / f"app{suffix}", sync=sync)

        def base(folder: Path, sync: bool = False, suffix: str = suffix) -> None:
            path = folder / f"base{suffix}"
            if suffix == ".pt":
                torch.save(model.state_dict(), path)
            else:
                save_model(model, str(path))
            if sync:
                with open(path, "rb+") as handle:
                    os.fsync(handle.fileno())

        row = Row(
            "export",
            f"export {suffix} (atomic, read back and verified) vs {baseline_name}",
            "<= 1.5x",
            1.5,
            note=f"both write to {where.parent}",
        )
        # Each run starts with the disk idle (os.sync, untimed): otherwise whichever runs second
        # competes with the writeback of the other's 500 MB.
        timed = compare(lambda: app(where), lambda: base(where), ctx.repeats, setup=_quiet_disk)
        rows.append(_finish(row, *timed))
        if row.ok is False:
            row.note = f"{row.note}; {OVER_TARGET_NOTE}"
        # `--sync` waits until the file is on disk before renaming; so does this baseline.
        same = Row(
            "export",
            f"export {suffix} --sync vs {baseline_name} + fsync (equally durable)",
            "informative",
            note=f"both write to {ctx.tmp} and wait for its disk",
        )
        timed = compare(
            lambda: app(ctx.tmp, sync=True),
            lambda: base(ctx.tmp, sync=True),
            ctx.repeats,
            setup=_quiet_disk,
        )
        rows.append(_finish(same, *timed))
    return rows


def _read_once(path: Path) -> None:
    """Every byte of ``path`` into one new buffer: the least any eager opener must do."""
    buffer = bytearray(path.stat().st_size)
    with open(path, "rb") as handle:
        handle.readinto(buffer)


def step_lazy_open(ctx: Context) -> list[Row]:
    from safetensors.torch import save_model

    pt = ctx.tmp / "checkpoint.pt"
    st = ctx.tmp / "checkpoint.safetensors"
    torch.save(ctx.model.state_dict(), pt)
    save_model(ctx.model, str(st))

    def eager() -> None:
        torch.load(pt, map_location="cpu", weights_only=True)

    rows = [_lazy_header_row(ctx, st, eager, pt.stat().st_size), *_app_open_rows(ctx, st, eager)]
    pt.unlink(missing_ok=True)
    st.unlink(missing_ok=True)
    return rows


def _lazy_header_row(ctx: Context, st: Path, eager: Callable[[], None], size: int) -> Row:
    """The reference: safetensors' own ``safe_open`` reading every header entry."""
    from safetensors import safe_open

    def lazy_header() -> None:
        with safe_open(str(st), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is no dict)
                f.get_slice(key).get_shape()

    return _finish(
        Row(
            "lazy_open",
            "lazy open (safetensors header) vs eager torch.load",
            "<= 0.01x",
            0.01,
            note=f"checkpoint {size / 1e6:.0f} MB; reference: safe_open itself",
        ),
        *compare(lazy_header, eager, ctx.repeats),
    )


def _app_open_rows(ctx: Context, st: Path, eager: Callable[[], None]) -> list[Row]:
    """``open_source`` as a small file opens (read whole) and as a large one (lazily)."""
    from paramscope.core.files import regions
    from paramscope.core.sources.sources import open_source

    def app_open() -> None:
        open_source(str(st))

    def app_open_lazily() -> None:
        saved, regions.LAZY_BYTES = regions.LAZY_BYTES, 0  # as a file over the lazy size opens
        try:
            open_source(str(st))
        finally:
            regions.LAZY_BYTES = saved

    return [
        _finish(
            Row(
                "lazy_open",
                "open .safetensors through the app (read into memory) vs one read of the file",
                "<= 1.5x",
                1.5,
                note=f"files up to {regions.LAZY_BYTES >> 20} MiB are read whole, never mapped "
                "(a mapped file saved over by a training job kills the process)",
            ),
            *compare(app_open, lambda: _read_once(st), ctx.repeats),
        ),
        _finish(
            Row(
                "lazy_open",
                "open .safetensors lazily through the app vs eager torch.load",
                "<= 0.01x",
                0.01,
                note="the opener for files over the lazy size: placeholders, values read on demand",
            ),
            *compare(app_open_lazily, eager, ctx.repeats),
        ),
    ]
