"""``LlmASRModel``: ESPnet's ASR model with the adapter-to-text matching loss.

Registered as the ESPnet model choice ``llm_asr`` (``model: llm_asr`` in YAML). Everything
else, the CTC / attention losses, statistics and beam search, is ESPnet's own
``ESPnetASRModel``; with ``matching_weight: 0`` the two are the same model.

Retrieved context: an optional data entry ``context`` (``context``/``context_lengths`` in the
batch, LLM token ids of passages joined by eos; see ``LlmASRTask``) is handed to a decoder that
reads it (``decoder: llm_xattn``) for ESPnet's attention loss.

sos/eos: ESPnet's ``sym_sos``/``sym_eos`` default to ``"<sos/eos>"``, and a symbol missing
from the token list silently becomes the last id (for SmolLM2 the string 'ectable'). With an
LLM decoder (one with an ``end_id``: its framing's end token) an unset ``sym_sos``/``sym_eos``
here defaults to that token, and a set one must be it (beam search stops on eos; the decoder
feeds its start token in place of sos); any other decoder gets ESPnet's defaults, but a symbol
missing from the token list is refused instead of falling back.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Dict, Optional, Tuple

import torch
from espnet2.asr.espnet_model import ESPnetASRModel

from espnet_llm_plugin.asr.matching_loss import CrossAttentionMatchingLoss


class LlmASRModel(ESPnetASRModel):
    """ESPnetASRModel + matching loss between adapter outputs and LLM text embeddings.

    Args (``model_conf``, besides every ``ESPnetASRModel`` option):
        matching_weight: weight of the matching loss added to the total loss.
        matching_distance: ``mse`` or ``cosine``.
        matching_num_heads: heads of the matching cross-attention.
        sym_sos, sym_eos: as ESPnet's, but unset means the LLM decoder's end token (see the
            module docstring).
    """

    def __init__(
        self,
        *args,
        matching_weight: float = 0.0,
        matching_distance: str = "mse",
        matching_num_heads: int = 4,
        sym_sos: Optional[str] = None,
        sym_eos: Optional[str] = None,
        **kwargs,
    ):
        kwargs.update(_sos_eos_symbols(args, kwargs, sym_sos, sym_eos))
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


def _sos_eos_symbols(
    args: Tuple[Any, ...], kwargs: Dict[str, Any], sym_sos: Optional[str], sym_eos: Optional[str]
) -> Dict[str, str]:
    """``sym_sos``/``sym_eos`` for ``ESPnetASRModel``: the LLM decoder's end token where unset;
    a symbol outside the token list, or (LLM decoder) other than its end token, is an error."""
    bound = inspect.signature(ESPnetASRModel.__init__).bind_partial(None, *args, **kwargs).arguments
    token_list = list(bound.get("token_list") or [])
    decoder = bound.get("decoder")
    end_id = getattr(decoder, "end_id", None)
    default = "<sos/eos>"
    if end_id is not None and 0 <= end_id < len(token_list):
        default = token_list[end_id]
    out = {}
    for key, value in (("sym_sos", sym_sos), ("sym_eos", sym_eos)):
        symbol = default if value is None else value
        if value is not None and token_list and symbol not in token_list:
            raise ValueError(
                f"model_conf.{key}: {symbol!r} is not in the token list ({len(token_list)} tokens); "
                "ESPnet would silently use the last id. Leave it unset for an LLM decoder (its end "
                "token is used) or name a token of the list"
            )
        if end_id is not None and symbol in token_list and token_list.index(symbol) != end_id:
            raise ValueError(
                f"model_conf.{key}: {symbol!r} (id {token_list.index(symbol)}) is not the LLM "
                f"decoder's end token {token_list[end_id]!r} (id {end_id}): beam search would not "
                "stop where the decoder's text ends. Leave it unset, or set decoder_conf.text_end"
            )
        out[key] = symbol
    return out
