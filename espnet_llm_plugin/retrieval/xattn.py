"""Cross-attention retrieval modules (arXiv 2406.09618): value encoder + gated blocks.

The cross-attention ASR model reads retrieved passages ("values") through extra blocks placed
between the layers of a decoder-only LLM:

* :class:`ValueEncoder` turns the passages' token ids ``(B, K, L)`` into a memory
  ``(B, K*L, Dv)``. Choice: the LLM's own input embedding table (frozen here: its output is
  detached, so passages are read in the LLM's token space without moving the LLM) followed by a
  projection to ``Dv``, learned positions within a passage and a few small pre-norm transformer
  layers. Each passage is encoded on its own (no attention across passages), as in the paper's
  per-document encoding; the memory is their concatenation. This is cheap compared with running
  the frozen LLM over every passage, and is trained from scratch with the blocks.
* :class:`GatedCrossAttentionBlock`: pre-norm multi-head cross-attention from LLM hidden states
  ``(B, T, D)`` over the memory (with a key padding mask), then a pre-norm feed-forward layer;
  each residual branch is scaled by ``tanh(gate)`` with the gates initialised to ZERO, so the
  wrapped LLM starts exactly unchanged (Flamingo-style). At the first step only the gates get
  gradients (the branches are multiplied by ``tanh(0) = 0``); once the gates move, the blocks
  and the value encoder learn too.

A row without any valid memory (an utterance without context) skips the block entirely: its
hidden states pass through unchanged, whatever the gates are.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class ValueEncoder(nn.Module):
    """Encode retrieved passages into a cross-attention memory.

    Args:
        embed_dim: width ``D`` of the token embeddings it is given (the LLM hidden size).
        memory_dim: width ``Dv`` of the memory.
        num_layers: transformer layers over each passage (0: embeddings + positions only).
        num_heads: attention heads of those layers (must divide ``memory_dim``).
        max_tokens: longest passage in tokens (learned positions).
        ffn_dim: feed-forward width of the layers (default ``2 * memory_dim``).
        dropout: dropout inside the layers.
    """

    def __init__(
        self,
        embed_dim: int,
        memory_dim: int,
        num_layers: int = 2,
        num_heads: int = 4,
        max_tokens: int = 64,
        ffn_dim: Optional[int] = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"ValueEncoder: num_layers must be >= 0, got {num_layers}")
        if max_tokens < 1:
            raise ValueError(f"ValueEncoder: max_tokens must be >= 1, got {max_tokens}")
        if memory_dim % num_heads != 0:
            raise ValueError(f"ValueEncoder: memory_dim {memory_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.memory_dim = memory_dim
        self.max_tokens = max_tokens
        self.proj = nn.Linear(embed_dim, memory_dim)
        self.positions = nn.Embedding(max_tokens, memory_dim)
        layer = nn.TransformerEncoderLayer(
            memory_dim,
            num_heads,
            ffn_dim or 2 * memory_dim,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False) if num_layers > 0 else None
        self.norm = nn.LayerNorm(memory_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.positions.weight, std=0.02)
        if self.layers is not None:
            for layer in self.layers.layers:
                for p in layer.parameters():
                    if p.dim() > 1:
                        nn.init.xavier_uniform_(p)
                    else:
                        nn.init.zeros_(p)
                for norm in (layer.norm1, layer.norm2):
                    norm.reset_parameters()
        self.norm.reset_parameters()

    def espnet_initialization_fn(self) -> None:
        """Called by ESPnet's ``initialize`` after its generic ``init``: our own init again."""
        self.reset_parameters()

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode passages.

        Args:
            ids: ``(B, K, L)`` token ids (any value where ``mask`` is False).
            mask: ``(B, K, L)`` bool, True at valid tokens.
            embed: the LLM's input embedding (``(N, L) -> (N, L, D)``); not a submodule here,
                so its weights are neither duplicated in the state dict nor trained through us.

        Returns:
            memory ``(B, K*L, Dv)`` and its bool mask ``(B, K*L)`` (True = valid).
        """
        if ids.shape != mask.shape or ids.dim() != 3:
            raise ValueError(f"ValueEncoder: ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must be (B, K, L)")
        B, K, L = ids.shape
        if L > self.max_tokens:
            raise ValueError(
                f"ValueEncoder: passages of {L} tokens, more than max_tokens={self.max_tokens} "
                f"(decoder_conf.passage_max_tokens)"
            )
        memory = torch.zeros(B * K, L, self.memory_dim, device=ids.device, dtype=self.proj.weight.dtype)
        flat_ids, flat_mask = ids.reshape(B * K, L), mask.reshape(B * K, L)
        # encode only non-empty passages: a fully padded row would give NaNs in attention
        rows = flat_mask.any(dim=1).nonzero(as_tuple=True)[0]
        if rows.numel() > 0:
            x_ids, x_mask = flat_ids[rows], flat_mask[rows]
            with torch.no_grad():  # frozen embedding table
                emb = embed(x_ids.masked_fill(~x_mask, 0))
            x = self.proj(emb.to(self.proj.weight.dtype)) + self.positions.weight[:L].unsqueeze(0)
            if self.layers is not None:
                x = self.layers(x, src_key_padding_mask=~x_mask)
            x = self.norm(x) * x_mask.unsqueeze(-1).to(x.dtype)
            memory = memory.index_copy(0, rows, x)
        return memory.reshape(B, K * L, self.memory_dim), mask.reshape(B, K * L)


class GatedCrossAttentionBlock(nn.Module):
    """Tanh-gated cross-attention + feed-forward, inserted after an LLM decoder layer.

    ``h <- h + tanh(g_attn) * CrossAttn(LN(h), memory)``;
    ``h <- h + tanh(g_ffn) * FFN(LN(h))``, gates initialised to zero (identity at start).

    Each position attends only to the memory, never to other positions, so the block is
    position-wise: running it on new tokens only (KV-cached decoding) gives the same result
    as running it on the whole sequence.

    Args:
        hidden_dim: LLM hidden size ``D``.
        memory_dim: memory width ``Dv``.
        num_heads: attention heads (must divide ``hidden_dim``).
        ffn_dim: feed-forward width (default ``2 * hidden_dim``).
        dropout: attention/FFN dropout.
    """

    def __init__(
        self,
        hidden_dim: int,
        memory_dim: int,
        num_heads: int = 4,
        ffn_dim: Optional[int] = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(
                f"GatedCrossAttentionBlock: hidden size {hidden_dim} is not divisible by "
                f"num_heads {num_heads} (decoder_conf.xattn_heads)"
            )
        self.num_heads = num_heads
        self.head_dim = hidden_dim // num_heads
        self.dropout = dropout
        self.attn_norm = nn.LayerNorm(hidden_dim)
        self.q_proj = nn.Linear(hidden_dim, hidden_dim)
        self.k_proj = nn.Linear(memory_dim, hidden_dim)
        self.v_proj = nn.Linear(memory_dim, hidden_dim)
        self.o_proj = nn.Linear(hidden_dim, hidden_dim)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        ffn = ffn_dim or 2 * hidden_dim
        self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden_dim))
        # shape (1,) rather than a scalar: ESPnet's "chainer" init rejects 0-dim parameters
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ffn_gate = nn.Parameter(torch.zeros(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.o_proj, self.ffn[0], self.ffn[3]):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.attn_norm.reset_parameters()
        self.ffn_norm.reset_parameters()
        with torch.no_grad():
            self.attn_gate.zero_()
            self.ffn_gate.zero_()

    def espnet_initialization_fn(self) -> None:
        """Called by ESPnet's ``initialize``: zero gates again after its generic ``init``."""
        self.reset_parameters()

    def project_memory(self, memory: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(Bm, H, M, Dh)`` of a memory ``(Bm, M, Dv)``."""
        Bm, M, _ = memory.shape
        memory = memory.to(self.k_proj.weight.dtype)
        k = self.k_proj(memory).view(Bm, M, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(memory).view(Bm, M, self.num_heads, self.head_dim).transpose(1, 2)
        return k, v

    def forward(self, hidden: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Read the memory.

        Args:
            hidden: ``(B, T, D)`` LLM hidden states.
            memory: ``(B, M, Dv)`` or ``(1, M, Dv)`` (one utterance's memory shared by B
                hypotheses; it is projected once, then expanded).
            memory_mask: ``(B, M)`` or ``(1, M)`` bool, True at valid memory slots.

        Returns:
            ``(B, T, D)`` hidden states, in ``hidden``'s dtype.
        """
        B, T, D = hidden.shape
        Bm = memory.size(0)
        if Bm not in (1, B) or memory_mask.shape != memory.shape[:2]:
            raise ValueError(
                f"GatedCrossAttentionBlock: memory {tuple(memory.shape)} / mask {tuple(memory_mask.shape)} "
                f"do not match hidden states {tuple(hidden.shape)}"
            )
        has_memory = memory_mask.any(dim=1)  # (Bm,)
        if not bool(has_memory.any()):
            return hidden
        dtype = self.q_proj.weight.dtype
        h = hidden.to(dtype)
        # zero the masked slots: garbage (even NaN) there must not reach the output
        k, v = self.project_memory(memory.masked_fill(~memory_mask.unsqueeze(-1), 0.0))
        # rows without memory attend to slot 0 (any finite value) and are switched off below
        attn_mask = memory_mask.clone()
        attn_mask[~has_memory, 0] = True
        if Bm != B:
            k, v = k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)
            attn_mask, has_memory = attn_mask.expand(B, -1), has_memory.expand(B)
        q = self.q_proj(self.attn_norm(h)).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        att = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, Dh)
        att = self.o_proj(att.transpose(1, 2).reshape(B, T, D))
        on = has_memory.to(dtype).view(B, 1, 1)
        h = h + on * torch.tanh(self.attn_gate) * att
        h = h + on * torch.tanh(self.ffn_gate) * self.ffn(self.ffn_norm(h))
        return h.to(hidden.dtype)


def default_memory_dim(hidden_dim: int, memory_dim: int) -> int:
    """``memory_dim`` or, when 0, the LLM hidden size."""
    if memory_dim < 0:
        raise ValueError(f"value_encoder_dim must be >= 0, got {memory_dim}")
    return memory_dim or hidden_dim
