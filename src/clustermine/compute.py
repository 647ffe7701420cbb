"""Where and in how much memory the chunked computations run: the device, the block sizes
that keep a similarity (or distance, or logit) block within a memory budget, and which
library (faiss or torch) does the kNN and k-means kernels.

Every chunked computation of the project sizes its blocks here, so that one setting
(``compute.memory_budget_mb`` in the workflow) bounds them all. The device and the budget are
speed settings: they change how a result is computed, never what it is. The k-means backend
is a clusterer parameter instead (docs/clustering.md, "Backends").
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_BUDGET_BYTES = 256 * 2**20
# Working copies per block element: the float32 product plus torch temporaries (topk/exp).
BLOCK_COPIES = 3


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` means the GPU when one is available, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_budget(device: torch.device) -> int:
    """The budget when none is given: 1 GiB on a GPU (bigger blocks keep it busy), 256 MiB on
    the CPU."""
    return 4 * DEFAULT_BUDGET_BYTES if device.type == "cuda" else DEFAULT_BUDGET_BYTES


def loader_workers(configured: int, threads: int) -> int:
    """Image-decoding processes of an encoding job: ``encode.num_workers``, at most the
    threads the scheduler gave the job (Snakemake lowers a rule's threads to ``--cores``), so
    that a job never starts more workers than it has cores (PyTorch warns when it does)."""
    return max(0, min(int(configured), int(threads)))


def budget_from_mb(megabytes: int | float | str | None) -> int | None:
    """A budget in MiB (the config's unit) as bytes; None stays None."""
    if megabytes is None:
        return None
    value = int(float(megabytes) * 2**20)
    if value <= 0:
        raise ValueError(f"memory budget must be positive, got {megabytes} MB")
    return value


def rows_within(budget_bytes: int, bytes_per_row: int, n_rows: int | None = None) -> int:
    """How many rows of ``bytes_per_row`` working memory fit the budget (at least one, at
    most ``n_rows``)."""
    if budget_bytes <= 0:
        raise ValueError(f"memory budget must be positive, got {budget_bytes} bytes")
    rows = max(1, int(budget_bytes) // max(1, int(bytes_per_row)))
    return rows if n_rows is None else max(1, min(int(n_rows), rows))


def block_shape(
    n_rows: int, n_cols: int, budget_bytes: int, bytes_per_element: int = 4
) -> tuple[int, int]:
    """Rows × columns of a block whose working set stays within ``budget_bytes``.

    Prefers up to 1024 rows per block (good matrix-product efficiency) and as many columns as
    then fit; few columns give more rows instead.
    """
    if budget_bytes <= 0:
        raise ValueError(f"memory budget must be positive, got {budget_bytes} bytes")
    elements = max(1, budget_bytes // (bytes_per_element * BLOCK_COPIES))
    rows = max(1, min(n_rows, 1024, elements))
    cols = max(1, min(n_cols, elements // rows))
    if cols == n_cols:
        rows = max(1, min(n_rows, elements // max(1, n_cols)))
    return rows, cols


def as_unit_tensor(
    x: np.ndarray | torch.Tensor, device: torch.device, *, inplace: bool = False
) -> torch.Tensor:
    """float32 tensor on ``device`` with L2-normalised rows.

    ``inplace``: normalise the rows where they lie when ``x`` is already float32 on
    ``device`` (the tensor then shares ``x``'s memory, and ``x`` is overwritten): no second
    copy of the data. The result is the same to the bit either way."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x)
    t = t.to(device=device, dtype=torch.float32)
    if not inplace:
        return torch.nn.functional.normalize(t, dim=-1, eps=1e-12)
    # The operations of torch.nn.functional.normalize, the division done in place.
    return t.div_(torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min_(1e-12))


# Which library does the heavy kernels of kNN and k-means (docs/clustering.md, "Backends").
BACKENDS = ("auto", "faiss", "torch")


def faiss_module():
    """The ``faiss`` module with its OpenMP threads set to torch's (the job's ``threads``), or
    None when faiss is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def pick_backend(backend: str | None, device: torch.device) -> str:
    """``"faiss"`` or ``"torch"`` for a requested backend on ``device``.

    ``auto`` (or None) is faiss on the CPU when it is installed, else torch: torch on a GPU,
    and torch on the CPU without faiss (the fallback). ``faiss`` is refused on a GPU (the
    CPU build is the dependency; faiss-gpu is measured by benchmarks/gpu_check.sh, not used)
    and when faiss is not installed.
    """
    backend = "auto" if backend is None else str(backend)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cpu = device.type == "cpu"
    if backend == "auto":
        return "faiss" if on_cpu and faiss_module() is not None else "torch"
    if not on_cpu:
        raise ValueError(
            f"backend 'faiss' runs on the CPU, but the device is {device}; use backend 'auto' "
            "(torch on a GPU) or the device 'cpu'"
        )
    if faiss_module() is None:
        raise ValueError(
            "backend 'faiss' needs the faiss package (pip install faiss-cpu); 'auto' falls back "
            "to torch without it"
        )
    return "faiss"
