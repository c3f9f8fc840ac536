"""``LlmASRModel``: ESPnet's ASR model with the adapter-to-text matching loss.

Registered as the ESPnet model choice ``llm_asr`` (``model: llm_asr`` in YAML). Everything
else, the CTC / attention losses, statistics and beam search, is ESPnet's own
``ESPnetASRModel``; with ``matching_weight: 0`` the two are the same model.

Retrieved context: an optional data entry ``context`` (``context``/``context_lengths`` in the
batch, LLM token ids of passages joined by eos; see ``LlmASRTask``) is handed to a decoder that
reads it (``decoder: llm_xattn``) for ESPnet's attention loss.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional, Tuple

import torch
from espnet2.asr.espnet_model import ESPnetASRModel

from espnet_llm_plugin.asr.matching_loss import CrossAttentionMatchingLoss


class LlmASRModel(ESPnetASRModel):
    """ESPnetASRModel + matching loss between adapter outputs and LLM text embeddings.

    Args (``model_conf``, besides every ``ESPnetASRModel`` option):
        matching_weight: weight of the matching loss added to the total loss.
        matching_distance: ``mse`` or ``cosine``.
        matching_num_heads: heads of the matching cross-attention.
    """

    def __init__(
        self,
        *args,
        matching_weight: float = 0.0,
        matching_distance: str = "mse",
        matching_num_heads: int = 4,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if matching_weight < 0:
            raise ValueError(f"model_conf.matching_weight must be >= 0, got {matching_weight}")
        self.matching_weight = matching_weight
        self.matching = None
        self._match_loss: Optional[torch.Tensor] = None
        if matching_weight > 0:
            embed = getattr(self.decoder, "text_embedding", None)
            if embed is None:
                raise ValueError(
                    "model_conf.matching_weight > 0 needs a decoder with LLM text embeddings "
                    f"(decoder: llm), got {type(self.decoder).__name__}"
                )
            dim = embed().embedding_dim
            self.matching = CrossAttentionMatchingLoss(dim, matching_num_heads, matching_distance)

    def _calc_att_loss(self, encoder_out, encoder_out_lens, ys_pad, ys_pad_lens):
        result = super()._calc_att_loss(encoder_out, encoder_out_lens, ys_pad, ys_pad_lens)
        if self.matching is not None:
            tokens = ys_pad.masked_fill(ys_pad < 0, 0)  # ESPnet pads with ignore_id (-1)
            text_emb = self.decoder.text_embedding()(tokens)  # (B, L, D)
            self._match_loss = self.matching(encoder_out, encoder_out_lens, text_emb, ys_pad_lens)
        return result

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        self._match_loss = None
        context = kwargs.pop("context", None)
        context_lengths = kwargs.pop("context_lengths", None)
        scope = contextlib.nullcontext()
        if context is not None:
            batch_context = getattr(self.decoder, "batch_context", None)
            if batch_context is None:
                raise ValueError(
                    f"data 'context' was given, but the decoder ({type(self.decoder).__name__}) does not "
                    f"read context; use decoder: llm_xattn or drop the context entry"
                )
            scope = batch_context(context, context_lengths)
        with scope:
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        if self._match_loss is not None:
            loss = loss + self.matching_weight * self._match_loss
            stats["loss_match"] = self._match_loss.detach()
            stats["loss"] = loss.detach()
            self._match_loss = None
        return loss, stats, weight
