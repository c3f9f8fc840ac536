"""Exact k-NN search in plain PyTorch (the GPU path: faiss-gpu is not pip-installable here).

Keys are kept as one ``(N, D)`` tensor on the device, in ``float16``/``bfloat16`` (GPU) or
``float32``. A search walks over key chunks: one matmul ``(Q, D) x (D, C)`` per chunk, a
top-k of the chunk, and a merge of the running top-k with the chunk's, so memory stays
``O(Q * (C + k))`` however big the datastore is. Squared L2 uses
``|q|^2 - 2 q.k + |k|^2`` with ``|k|^2`` precomputed in float32.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

from espnet_llm_plugin.retrieval.search_backend import SearchBackend, check_metric

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchExactSearch(SearchBackend):
    """Brute-force exact search; same interface as the faiss backend.

    Args:
        dim: key width ``D``.
        metric: ``l2`` (squared distance, ascending) or ``ip`` (inner product, descending).
        device: where keys live and matmuls run.
        dtype: key storage/matmul dtype; None: float16 on CUDA, float32 on the CPU.
        chunk_size: keys per matmul chunk.
    """

    def __init__(
        self,
        dim: int,
        metric: str = "l2",
        device: Union[str, torch.device] = "cpu",
        dtype: Optional[str] = None,
        chunk_size: int = 65536,
    ):
        self.dim = int(dim)
        self.metric = check_metric(metric)
        self.device = torch.device(device)
        if dtype is None:
            dtype = "float16" if self.device.type == "cuda" else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.dtype = DTYPES[dtype]
        self.chunk_size = int(chunk_size)
        self.keys = torch.zeros((0, self.dim), dtype=self.dtype, device=self.device)
        self.sq_norms = torch.zeros((0,), dtype=torch.float32, device=self.device)

    @property
    def ntotal(self) -> int:
        return int(self.keys.size(0))

    def add(self, keys: Union[np.ndarray, torch.Tensor]) -> None:
        k = torch.as_tensor(np.asarray(keys) if not torch.is_tensor(keys) else keys)
        if k.dim() != 2 or k.size(1) != self.dim:
            raise ValueError(f"keys must have shape (N, {self.dim}), got {tuple(k.shape)}")
        k = k.to(device=self.device, dtype=self.dtype)
        self.keys = torch.cat([self.keys, k]) if self.ntotal else k.contiguous()
        self.sq_norms = torch.cat([self.sq_norms, k.float().pow(2).sum(1)])

    @torch.no_grad()
    def search_tensor(self, queries: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`search` on tensors (stays on the device): ``(Q, D) -> (Q, k), (Q, k)``."""
        q = queries.to(device=self.device)
        Q = q.size(0)
        largest = self.metric == "ip"
        fill = float("-inf") if largest else float("inf")
        best_s = torch.full((Q, k), fill, dtype=torch.float32, device=self.device)
        best_i = torch.full((Q, k), -1, dtype=torch.long, device=self.device)
        q_low = q.to(self.dtype)
        q_sq = q.float().pow(2).sum(1, keepdim=True)
        for start in range(0, self.ntotal, self.chunk_size):
            chunk = self.keys[start : start + self.chunk_size]
            dots = (q_low @ chunk.T).float()  # (Q, C)
            if largest:
                s = dots
            else:
                s = (q_sq - 2 * dots + self.sq_norms[start : start + chunk.size(0)]).clamp_min_(0)
            kk = min(k, s.size(1))
            cs, ci = s.topk(kk, dim=1, largest=largest)
            # merge the running top-k with this chunk's
            all_s = torch.cat([best_s, cs], dim=1)
            all_i = torch.cat([best_i, ci + start], dim=1)
            top_s, pos = all_s.topk(k, dim=1, largest=largest)
            best_s, best_i = top_s, all_i.gather(1, pos)
        return best_s, best_i

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        q = self.check_queries(queries, k)
        s, i = self.search_tensor(torch.from_numpy(q), k)
        return s.cpu().numpy(), i.cpu().numpy()
