"""Matching loss between adapter outputs and the LLM's text embeddings (arXiv 2406.17272).

The transcript's token embeddings (queries) attend over the adapter outputs (keys/values)
of the same utterance; the attended vectors should reproduce the embeddings. Minimising
the gap pulls the speech representation into the LLM's embedding space, which the paper
finds helps when the LLM is frozen or LoRA-tuned.
"""

from __future__ import annotations

import torch


class CrossAttentionMatchingLoss(torch.nn.Module):
    """``loss = dist(CrossAttn(Q=text_emb, K=V=speech), text_emb)`` over valid text tokens.

    Args:
        dim: LLM hidden size ``D`` (adapter output width).
        num_heads: attention heads of the cross-attention.
        distance: ``"mse"`` or ``"cosine"`` (``1 - cos``).
    """

    def __init__(self, dim: int, num_heads: int = 4, distance: str = "mse"):
        super().__init__()
        if distance not in ("mse", "cosine"):
            raise ValueError(f"model_conf.matching_distance must be 'mse' or 'cosine', got {distance!r}")
        if dim % num_heads != 0:
            raise ValueError(f"model_conf.matching_num_heads={num_heads} must divide the LLM hidden size {dim}")
        self.attention = torch.nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.distance = distance

    def forward(
        self,
        speech: torch.Tensor,
        speech_lens: torch.Tensor,
        text_emb: torch.Tensor,
        text_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Mean matching loss.

        Args:
            speech: ``(B, T, D)`` adapter outputs; ``speech_lens`` ``(B,)``.
            text_emb: ``(B, L, D)`` text token embeddings (targets; not updated through
                this loss); ``text_lens`` ``(B,)``, 0 for non-speech segments.

        Returns:
            scalar loss (0 when no utterance has text).
        """
        t = speech.size(1)
        key_pad = torch.arange(t, device=speech.device)[None, :] >= speech_lens[:, None]
        target = text_emb.detach()
        attended, _ = self.attention(target.to(speech.dtype), speech, speech, key_padding_mask=key_pad)
        valid = torch.arange(text_emb.size(1), device=speech.device)[None, :] < text_lens[:, None]
        if not valid.any():
            return speech.sum() * 0.0  # keeps the graph: DDP needs every parameter used
        a, e = attended[valid].float(), target[valid].float()
        if self.distance == "mse":
            return torch.nn.functional.mse_loss(a, e)
        return (1.0 - torch.nn.functional.cosine_similarity(a, e, dim=-1)).mean()
