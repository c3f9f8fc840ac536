"""A beam-search scorer that forbids repeating any n-gram within a hypothesis.

Against the LLM decoder's insertion errors (loops such as "the the the ..."), as Hugging
Face's ``no_repeat_ngram_size``, but as an ESPnet batch scorer, so it combines with every
other scorer of ESPnet's beam search (CTC, LM, kNN-LM).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from espnet.nets.scorer_interface import BatchScorerInterface

from espnet_llm_plugin.core.decode_scorers import DecodeScorerContext


class NoRepeatNgramScorer(BatchScorerInterface):
    """Scores ``-inf`` for every token that would complete an n-gram already in the prefix.

    Args:
        n: n-gram size (``>= 1``; 1 forbids repeating any token).
        vocab_size: number of tokens ``V``.
        skip_first: leading tokens of ``ys`` that are not text (ESPnet's ``<sos>``).
    """

    def __init__(self, n: int, vocab_size: int, skip_first: int = 1):
        if n < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {n}")
        self.n = n
        self.vocab_size = vocab_size
        self.skip_first = skip_first

    def banned_tokens(self, tokens: List[int]) -> List[int]:
        """Tokens that would repeat an n-gram of ``tokens`` if appended next."""
        n = self.n
        if n == 1:
            return sorted(set(tokens))
        prefix = tokens[len(tokens) - (n - 1) :]
        return sorted({tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i : i + n - 1] == prefix})

    def score(self, y: torch.Tensor, state: Any, x: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        """``y``: ``(L,)`` prefix -> ``(V,)`` scores (``x`` is not used and may be None)."""
        scores, _ = self.batch_score(y.unsqueeze(0), [state], None)
        return scores[0], None

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[Optional[Any]]]:
        """``ys``: ``(n_batch, L)`` prefixes -> ``(n_batch, V)`` scores (0 or ``-inf``), on
        ``ys``' device (``xs`` is not used and may be None)."""
        scores = torch.zeros(ys.size(0), self.vocab_size, device=ys.device, dtype=torch.float32)
        for b, row in enumerate(ys[:, self.skip_first :].tolist()):
            banned = self.banned_tokens(row)
            if banned:
                scores[b, banned] = float("-inf")
        return scores, [None] * ys.size(0)


def build_decode_scorer(ctx: DecodeScorerContext, size: int) -> NoRepeatNgramScorer:
    """The ``no_repeat_ngram`` decode-time scorer (:mod:`espnet_llm_plugin.core.decode_scorers`)."""
    return NoRepeatNgramScorer(int(size), ctx.beam_search.n_vocab)
