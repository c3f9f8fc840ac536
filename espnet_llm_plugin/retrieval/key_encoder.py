"""Datastore keys from a Hugging Face causal LM: hidden states of memory windows.

Key at a window position = the LM's hidden state there (``output_hidden_states[layer]``:
index 0 is the embedding output, ``-1`` the last layer after the final norm, as HF numbers
them); value = the next token id. The query at decoding time is the same layer's state at
the last prefix position (:class:`espnet_llm_plugin.retrieval.hf_lm_scorer.HfLmScorer`), so
keys and queries live in one space only when the model (its weights, not only its config),
layer and tokenizer are the same: :meth:`KeyEncoder.identity` records them for the datastore
manifest.

The encoder also holds the model's text form and framing (explicit, else the model dir's
``llm_usage.json``, else the identity form and the legacy ``[bos] text [eos]``): memory text
is tokenised with them, and decoding queries must see text the same way.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from espnet_llm_plugin.core.base_weights import base_content_hash
from espnet_llm_plugin.core.device import resolve_device
from espnet_llm_plugin.core.framing import resolve_framing
from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.core.text_form import resolve_text_form
from espnet_llm_plugin.retrieval.document_store import Window

logger = logging.getLogger(__name__)


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


def weights_fingerprint(path: str) -> str:
    """sha256 of the weight files of the model directory ``path`` (hex): the key encoder's weights.

    Two checkpoints of one config (same config hash) give keys in different spaces; this tells
    them apart. The hash of the files (:func:`~espnet_llm_plugin.core.base_weights.base_content_hash`,
    once per process, from ``pretrained_manifest.json`` where it lists them), not of the loaded
    tensors, so a model loaded in another dtype (a bfloat16 build on a GPU, float32 queries on a
    CPU) has the same fingerprint.

    Raises:
        ValueError: ``path`` holds no weight files.
    """

    return base_content_hash(path)


def lm_identity(path: str, model: torch.nn.Module, tokenizer: Any, layer: int) -> Dict[str, Any]:
    """What keys depend on: model path, config hash, tokenizer hash, hidden size, layer, and the
    weights' fingerprint (:func:`weights_fingerprint` of ``path``, the dir ``model`` was loaded from)."""
    return {
        "model_path": str(path),
        "config_hash": config_hash(model),
        "tokenizer_hash": tokenizer_hash(tokenizer),
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size(model),
        "layer": int(layer),
        "weights_sha256": weights_fingerprint(path),
    }


class KeyEncoder:
    """Encode windows into ``(keys (N, D) float32, values (N,) int64)`` with an HF causal LM.

    Args:
        model_path: local HF model dir (``save_pretrained``) with its tokenizer.
        layer: hidden-state index (default ``-1``: last layer).
        device: ``auto|cpu|cuda[:N]``.
        dtype: ``float32|bfloat16|float16`` (half types need CUDA).
        batch_size: windows per forward pass.
        framing: ``{"start": [...], "end": [...]}`` for memory texts; None: the model dir's
            ``llm_usage.json``, else the legacy ``[bos] text [eos]``.
        text_form: ``{"case": ..., "punctuation": ...}``: how memory text (recipe form) is
            shown to the LM; None: ``llm_usage.json``, else as it is.
    """

    def __init__(
        self,
        model_path: str,
        layer: int = -1,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 64,
        framing: Optional[Mapping[str, Any]] = None,
        text_form: Optional[Mapping[str, Any]] = None,
    ):

        self.device = resolve_device(device)
        self.model, self.tokenizer = load_causal_lm(model_path, dtype=dtype, device=self.device)
        self.model_path = str(model_path)
        self.layer = check_layer(self.model, layer)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._has_logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        self.framing = resolve_framing(framing, model_path, "key encoder framing")
        self.text_form = resolve_text_form(text_form, model_path, "key encoder text_form")
        # an unknown framing token fails here, naming its source, not at the first memory text
        self.framing.start_ids(self.tokenizer)
        self.framing.end_ids(self.tokenizer)

    @property
    def hidden_size(self) -> int:
        return hidden_size(self.model)

    def identity(self) -> Dict[str, Any]:
        return lm_identity(self.model_path, self.model, self.tokenizer, self.layer)

    @torch.no_grad()
    def encode_batch(self, windows: Sequence[Window], with_logp: bool = False) -> Tuple[np.ndarray, ...]:
        """Keys and values of ``windows`` (right-padded into one batch; causal, so padding
        after a position does not change its hidden state).

        Returns:
            ``keys (N, D)`` float32, ``values (N,)`` int64 and, with ``with_logp``, the LM's
            ``log p(value | window up to the key)`` ``(N,)`` float32 (from the model's own
            logits, so any output head or soft-capping is included).
        """
        lens = [len(w.input_ids) for w in windows]
        T = max(lens)
        ids = torch.full((len(windows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(windows), T), dtype=torch.long)
        for i, w in enumerate(windows):
            ids[i, : lens[i]] = torch.tensor(w.input_ids)
            mask[i, : lens[i]] = 1
        rows = torch.tensor([i for i, w in enumerate(windows) for _ in range(w.n_keys)], dtype=torch.long)
        cols = torch.tensor([p for w in windows for p in w.key_positions()], dtype=torch.long)
        values = np.array([v for w in windows for v in w.values()], dtype=np.int64)
        first = int(cols.min()) if len(cols) else T - 1
        # logits only from the first key position on (a (B, T, V) tensor is large for 50k+ vocabularies)
        keep = (T - first) if with_logp else 1
        extra = {"logits_to_keep": keep} if self._has_logits_to_keep else {}
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            output_hidden_states=True,
            use_cache=False,
            **extra,
        )
        hs = out.hidden_states[self.layer]  # (B, T, D)
        keys = hs[rows, cols].float().cpu().numpy()
        if not with_logp:
            return keys, values
        offset = T - out.logits.size(1)  # logits cover positions offset..T-1
        # over the tokenizer's vocabulary, as HfLmScorer scores (an embedding table may be padded)
        logits = out.logits[rows, cols - offset, : len(self.tokenizer)].float()  # (N, V)
        target = torch.from_numpy(values).to(logits.device).unsqueeze(1)
        logp = (logits.gather(1, target).squeeze(1) - logits.logsumexp(-1)).cpu().numpy()
        return keys, values, logp

    def encode(
        self, windows: Iterable[Window], progress: bool = False, with_logp: bool = False
    ) -> Tuple[np.ndarray, ...]:
        """Keys ``(N, D)`` float32 and values ``(N,)`` int64 of all ``windows`` (and, with
        ``with_logp``, the LM's log-probs of the values ``(N,)``; see :meth:`encode_batch`)."""
        windows = list(windows)
        parts: List[Tuple[np.ndarray, ...]] = []
        for b in tqdm(range(0, len(windows), self.batch_size), desc="keys", unit="batch", disable=not progress):
            parts.append(self.encode_batch(windows[b : b + self.batch_size], with_logp=with_logp))
        if not parts:
            empty = (np.zeros((0, self.hidden_size), np.float32), np.zeros((0,), np.int64))
            return empty + ((np.zeros((0,), np.float32),) if with_logp else ())
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
