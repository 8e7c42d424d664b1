"""Measuring tools used by every plugin's benchmarks.

- :class:`SavedTensorMeter`: bytes the autograd graph saves for backward (current and peak),
  de-duplicated by storage, parameters excluded. CPU-friendly stand-in for
  ``torch.cuda.max_memory_allocated`` when comparing activation memory of gradient methods.
- :func:`peak_rss_bytes`: the process's peak resident set size (whole-process memory).
- :class:`PeakRSSWindow`: the peak RSS reached inside one block, above the level at its start, so
  several methods can be compared in one process (Linux: resets the kernel's high-water mark).
- :func:`timeit`: median wall time of a callable (for benchmark scripts, never for tests).
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["SavedTensorMeter", "PeakRSSWindow", "peak_rss_bytes", "current_rss_bytes", "timeit", "tensor_storage_bytes"]


def tensor_storage_bytes(t: torch.Tensor) -> int:
    """Bytes of the storage behind ``t`` (the whole storage, as a view keeps it alive)."""
    return int(t.untyped_storage().nbytes())


class _Holder:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedTensorMeter:
    """Count bytes that autograd saves for backward while the meter is active.

    Use as a context manager around the forward pass (and backward, to see memory being released)::

        with SavedTensorMeter(exclude=model) as meter:
            loss = model(x).sum()
            peak_fwd = meter.current_bytes
            loss.backward()
        print(meter.peak_bytes)

    Each storage counts once however many saved tensors view it; parameters (``nn.Parameter``
    instances and every storage of the modules/tensors in ``exclude``) are not counted.
    Saved tensors are released when the graph frees them, which lowers ``current_bytes``.
    """

    def __init__(self, exclude: torch.nn.Module | Iterable[Any] | None = None) -> None:
        self._excluded: set[int] = set()
        items: list[Any]
        if exclude is None:
            items = []
        elif isinstance(exclude, (torch.nn.Module, torch.Tensor)):
            items = [exclude]
        else:
            items = list(exclude)
        for item in items:
            if isinstance(item, torch.nn.Module):
                for p in item.parameters():
                    self._excluded.add(p.untyped_storage().data_ptr())
                for b in item.buffers():
                    self._excluded.add(b.untyped_storage().data_ptr())
            elif isinstance(item, torch.Tensor):
                self._excluded.add(item.untyped_storage().data_ptr())
        self._lock = threading.Lock()
        self._refs: dict[tuple[str, int], list[int]] = {}  # key -> [refcount, nbytes]
        self.current_bytes = 0
        self.peak_bytes = 0
        self.saved_count = 0
        self._ctx: Any = None

    def _key(self, t: torch.Tensor) -> tuple[str, int]:
        return (str(t.device), t.untyped_storage().data_ptr())

    def _release(self, key: tuple[str, int]) -> None:
        with self._lock:
            entry = self._refs.get(key)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0:
                del self._refs[key]
                self.current_bytes -= entry[1]

    def _pack(self, t: torch.Tensor) -> Any:
        base = t._base if t._base is not None else t
        if isinstance(base, torch.nn.Parameter) or t.untyped_storage().data_ptr() in self._excluded:
            return t
        if t.untyped_storage().data_ptr() == 0:  # empty or meta
            return t
        key = self._key(t)
        with self._lock:
            self.saved_count += 1
            entry = self._refs.get(key)
            if entry is None:
                nbytes = tensor_storage_bytes(t)
                self._refs[key] = [1, nbytes]
                self.current_bytes += nbytes
                self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            else:
                entry[0] += 1
        holder = _Holder(t)
        weakref.finalize(holder, self._release, key)
        return holder

    @staticmethod
    def _unpack(obj: Any) -> torch.Tensor:
        return obj.tensor if isinstance(obj, _Holder) else obj

    def reset_peak(self) -> None:
        """Set ``peak_bytes`` to ``current_bytes``."""
        with self._lock:
            self.peak_bytes = self.current_bytes

    def __enter__(self) -> SavedTensorMeter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
        self._ctx = None

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    def __repr__(self) -> str:
        return f"SavedTensorMeter(current={self.current_bytes}, peak={self.peak_bytes})"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (``getrusage``)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def current_rss_bytes() -> int:
    """Current resident set size of this process in bytes (Linux ``/proc``; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize()
    except OSError:
        return peak_rss_bytes()


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


class PeakRSSWindow:
    """Peak resident set size reached inside a ``with`` block, above the RSS at its start.

    ``getrusage``'s peak only ever grows, so it cannot compare two methods run one after the other in
    one process. On Linux this window resets the kernel's high-water mark (``/proc/self/clear_refs``)
    at entry and reads ``VmHWM - VmRSS(entry)`` at exit; elsewhere it raises ``RuntimeError``::

        with PeakRSSWindow() as win:
            loss = step()
        print(win.peak_delta_bytes)
    """

    def __init__(self) -> None:
        self.rss_before = 0
        self.peak_delta_bytes = 0

    def __enter__(self) -> PeakRSSWindow:
        if not sys.platform.startswith("linux"):
            raise RuntimeError("PeakRSSWindow needs Linux /proc (clear_refs, VmHWM); use peak_rss_bytes() elsewhere")
        gc.collect()
        self.rss_before = _proc_status_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_delta_bytes = _proc_status_bytes("VmHWM") - self.rss_before

    @property
    def peak_delta_mib(self) -> float:
        return self.peak_delta_bytes / 2**20


def timeit(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median / min wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeat": float(repeat)}
