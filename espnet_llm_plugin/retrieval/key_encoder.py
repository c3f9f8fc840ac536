"""Datastore keys from a Hugging Face causal LM: hidden states of memory windows.

Key at a window position = the LM's hidden state there (``output_hidden_states[layer]``:
index 0 is the embedding output, ``-1`` the last layer after the final norm, as HF numbers
them); value = the next token id. The query at decoding time is the same layer's state at
the last prefix position (:class:`espnet_llm_plugin.retrieval.hf_lm_scorer.HfLmScorer`), so
keys and queries live in one space only when the model, layer and tokenizer are the same:
:meth:`KeyEncoder.identity` records them for the datastore manifest.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_llm_plugin.retrieval.document_store import Window

logger = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cpu``/``cuda``/``cuda:N`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available")
    return torch.device(device)


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary (token -> id, added tokens included)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def config_hash(model: torch.nn.Module) -> str:
    """sha256 of the model config (JSON, sorted keys) - detects another architecture/size."""
    cfg = model.config.to_dict()
    for volatile in ("transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        cfg.pop(volatile, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def hidden_size(model: torch.nn.Module) -> int:
    return int(model.config.get_text_config(decoder=True).hidden_size)


def check_layer(model: torch.nn.Module, layer: int) -> int:
    """Validate ``layer`` against ``num_hidden_layers`` (HF hidden_states has L+1 entries)."""
    n = int(model.config.get_text_config(decoder=True).num_hidden_layers) + 1
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} out of range: the model has hidden states 0..{n - 1} (or -1..-{n})")
    return layer


def lm_identity(path: str, model: torch.nn.Module, tokenizer: Any, layer: int) -> Dict[str, Any]:
    """What keys depend on: model path, config hash, tokenizer hash, hidden size, layer."""
    return {
        "model_path": str(path),
        "config_hash": config_hash(model),
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size(model),
        "layer": int(layer),
    }


class KeyEncoder:
    """Encode windows into ``(keys (N, D) float32, values (N,) int64)`` with an HF causal LM.

    Args:
        model_path: local HF model dir (``save_pretrained``) with its tokenizer.
        layer: hidden-state index (default ``-1``: last layer).
        device: ``auto|cpu|cuda[:N]``.
        dtype: ``float32|bfloat16|float16`` (half types need CUDA).
        batch_size: windows per forward pass.
    """

    def __init__(
        self,
        model_path: str,
        layer: int = -1,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 64,
    ):
        from espnet_llm_plugin.asr.hf_causal_lm import load_causal_lm

        self.device = resolve_device(device)
        self.model, self.tokenizer = load_causal_lm(model_path, dtype=dtype, device=self.device)
        self.model_path = str(model_path)
        self.layer = check_layer(self.model, layer)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._has_logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)

    @property
    def hidden_size(self) -> int:
        return hidden_size(self.model)

    def identity(self) -> Dict[str, Any]:
        return lm_identity(self.model_path, self.model, self.tokenizer, self.layer)

    @torch.no_grad()
    def encode_batch(self, windows: Sequence[Window]) -> Tuple[np.ndarray, np.ndarray]:
        """Keys and values of ``windows`` (right-padded into one batch; causal, so padding
        after a position does not change its hidden state)."""
        lens = [len(w.input_ids) for w in windows]
        T = max(lens)
        ids = torch.full((len(windows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(windows), T), dtype=torch.long)
        for i, w in enumerate(windows):
            ids[i, : lens[i]] = torch.tensor(w.input_ids)
            mask[i, : lens[i]] = 1
        extra = {"logits_to_keep": 1} if self._has_logits_to_keep else {}  # no (B, T, V) logits
        out = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            output_hidden_states=True, use_cache=False, **extra,
        )
        hs = out.hidden_states[self.layer]  # (B, T, D)
        rows = [i for i, w in enumerate(windows) for _ in range(w.n_keys)]
        cols = [p for w in windows for p in w.key_positions()]
        keys = hs[torch.tensor(rows), torch.tensor(cols)].float().cpu().numpy()
        values = np.array([v for w in windows for v in w.values()], dtype=np.int64)
        return keys, values

    def encode(self, windows: Iterable[Window], progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Keys ``(N, D)`` float32 and values ``(N,)`` int64 of all ``windows``."""
        from tqdm import tqdm

        windows = list(windows)
        keys: List[np.ndarray] = []
        values: List[np.ndarray] = []
        for b in tqdm(range(0, len(windows), self.batch_size), desc="keys", unit="batch", disable=not progress):
            k, v = self.encode_batch(windows[b : b + self.batch_size])
            keys.append(k)
            values.append(v)
        if not keys:
            return np.zeros((0, self.hidden_size), np.float32), np.zeros((0,), np.int64)
        return np.concatenate(keys), np.concatenate(values)
