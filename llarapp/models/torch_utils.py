"""Small torch helpers shared by the training stages: device choice, seeding and sparse
CSR construction."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

from llarapp.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU when one is present (CUDA or ROCm builds), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no GPU is visible; use device=auto")
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for sampling.

    ``deterministic`` makes torch pick reproducible kernels (e.g. sorted scatter-adds for
    embedding gradients), so the same seed gives bit-identical weights and metrics.
    """
    random.seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # deterministic mode also NaN-fills every torch.empty (and so every torch.zeros twice):
    # a debugging aid that cost a LightGCN step two extra passes over its largest tables.
    # Nothing here reads memory it has not written, so reproducibility does not need it.
    torch.utils.deterministic.fill_uninitialized_memory = False
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the weights, e.g. to keep the best epoch's."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def csr_index_dtype(*sizes: int) -> torch.dtype:
    """32-bit CSR indices when every size fits: MKL then needs no per-call conversion."""
    return torch.int32 if max(sizes) < 2 ** 31 else torch.int64


def sparse_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
               shape: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR tensor with the narrowest indices that hold ``shape`` and ``values``.
    Its invariants are not checked (a pass over the indices): callers build them sorted."""
    index = csr_index_dtype(*shape, len(values))
    with warnings.catch_warnings():  # torch flags sparse CSR as beta; it is what we want
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow.to(index), col.to(index), values, shape,
                                       check_invariants=False)
