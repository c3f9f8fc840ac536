"""Any Hugging Face causal LM as an ESPnet batch beam-search scorer, with a KV cache.

For shallow fusion and as the base LM of the kNN-LM. The ESPnet ASR model's token list must
be the LM tokenizer's vocabulary in id order (``token_type: hugging_face`` with the LM dir as
``bpemodel``), so ESPnet ids are LM ids; :func:`check_token_list` says where they differ. The
LM may extend that vocabulary with tokens the ASR model never emits (the ``<speech>`` and
``<unit_i>`` tokens of a speech+text LM made from the ASR model's LLM): its next-token
distribution is then renormalised over the ASR token list.

ESPnet prefixes start with its ``sos`` id; the LM gets its framing's start tokens there
(:class:`~espnet_llm_plugin.core.framing.LmFraming`, from the LM dir's ``llm_usage.json``; the
legacy framing's BOS, or EOS when the tokenizer has no BOS, without one), so an ESPnet model
with ``sym_sos: </s>`` works unchanged. The end of a hypothesis is ESPnet's ``eos`` id
(``eos_id``; default the tokenizer's eos, as ``sym_eos`` names it in our configs); when the
framing ends texts with another token (SmolLM2: ``<|endoftext|>``, not the chat-turn end
``<|im_end|>``), the two columns of the LM's distribution are swapped, so the eos hypothesis
gets the LM's probability that the text ends (:meth:`HfLmScorer.lm_to_scored_ids` does the
same for kNN-LM datastore values).

Text form: the scored tokens are the ASR model's own output tokens (its token list is the LM's
vocabulary), so the LM reads hypotheses in whatever form the ASR model writes; there is
nothing to map. An LLM-ASR model trained with a text form (e.g. sentence case) writes that
form; build kNN-LM memories with the same form (``build_datastore`` takes it from the same
``llm_usage.json``).

State handling follows :class:`espnet_llm_plugin.asr.llm_decoder.LlmDecoder` (and reuses its
row selection): one batched KV cache per ``batch_score`` call; a hypothesis state is a weak
reference to that cache, its row and token count; only caches of the latest step are kept
alive, and a state whose cache is gone is recomputed from its tokens.

Besides log-probs, each call yields the hidden state (``hidden_states[layer]``) at the last
prefix position: the kNN-LM query (:class:`espnet_llm_plugin.retrieval.knnlm_scorer.KnnLmScorer`).

Per-utterance context prefix (:meth:`HfLmScorer.set_prefix`, e.g. the utterance's
``<speech>units</speech>`` span for multi-modal kNN-LM queries): LM ids placed before every
hypothesis. Its KV cache is computed once per utterance and copied into the rows of every
hypothesis whose own cache is gone, so hypotheses never recompute it.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from espnet.nets.scorer_interface import BatchScorerInterface

from espnet_llm_plugin.core.beam_kv_cache import CacheState, LiveCaches, select_cache_rows
from espnet_llm_plugin.core.decode_scorers import DecodeScorerContext
from espnet_llm_plugin.core.framing import EOS_ALIAS, resolve_framing
from espnet_llm_plugin.core.hf_causal_lm import cache_kwarg, load_causal_lm, output_cache
from espnet_llm_plugin.retrieval.key_encoder import check_layer, hidden_size, lm_identity


class TokenListMismatch(ValueError):
    """The ESPnet token list is not the LM tokenizer's vocabulary."""


def check_token_list(token_list: Sequence[str], tokenizer: Any, lm_path: str) -> None:
    """Raise :class:`TokenListMismatch` unless ``token_list`` is the tokenizer vocab in id order,
    or its beginning (an LM whose vocabulary was extended after the ASR model's, e.g. with
    speech-unit tokens; the extra tokens are never hypotheses)."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    token_list = list(token_list)
    if token_list == vocab[: len(token_list)] and token_list:
        return
    diffs = [(i, a, b) for i, (a, b) in enumerate(zip(token_list, vocab)) if a != b][:5]
    shown = ", ".join(f"id {i}: ESPnet {a!r} vs LM {b!r}" for i, a, b in diffs)
    raise TokenListMismatch(
        f"the ASR model's token list ({len(token_list)} tokens) is not the vocabulary of the LM "
        f"tokenizer at {lm_path} ({len(vocab)} tokens)"
        + (f"; first differences: {shown}" if shown else "; the LM's vocabulary is the shorter one")
        + ". Use an ASR model trained with token_type hugging_face and bpemodel = this LM"
    )


HfLmState = CacheState


class HfLmScorer(torch.nn.Module, BatchScorerInterface):
    """Hugging Face causal LM scorer for ESPnet's ``BatchBeamSearch``.

    Args:
        lm_path: local HF model dir with its tokenizer.
        token_list: the ASR model's token list (checked against the tokenizer; it may be the
            beginning of the LM's vocabulary, which then scores only those tokens); None: the
            whole LM vocabulary, no check.
        layer: hidden-state index exposed as kNN query (default ``-1``, the last layer).
        device: where the LM runs.
        dtype: ``float32|bfloat16|float16``.
        framing: ``{"start": [...], "end": [...]}``; None: the LM dir's ``llm_usage.json``,
            else the legacy ``[bos] text [eos]``.
        eos_id: ESPnet's eos id (the ASR model's); None: the tokenizer's eos.
    """

    def __init__(
        self,
        lm_path: str,
        token_list: Optional[Sequence[str]] = None,
        layer: int = -1,
        device: str = "cpu",
        dtype: str = "float32",
        framing: Optional[Mapping[str, Any]] = None,
        eos_id: Optional[int] = None,
    ):

        super().__init__()
        model, tokenizer = load_causal_lm(lm_path, dtype=dtype, device=device)
        if token_list is not None:
            check_token_list(token_list, tokenizer, lm_path)
        self.lm = model
        self.tokenizer = tokenizer
        self.lm_path = str(lm_path)
        self.layer = check_layer(model, layer)
        self.lm_vocab = len(tokenizer)  # ids the LM reads (prefix spans may use all of them)
        self.n_vocab = len(token_list) if token_list is not None else self.lm_vocab  # ids it scores
        self.hidden_size = hidden_size(model)
        self.framing = resolve_framing(framing, lm_path, "HfLmScorer framing")
        start = self.framing.start_ids(tokenizer)
        if not start:  # a causal LM needs one token to predict the first from (legacy: eos)
            if tokenizer.eos_token_id is None:
                raise ValueError(
                    f"the tokenizer at {lm_path} has neither a bos nor an eos token, and the framing "
                    "has no start token: name one in framing.start"
                )
            start = [int(tokenizer.eos_token_id)]
        self.start_ids: Tuple[int, ...] = tuple(start)
        self.start_id = self.start_ids[-1]  # replaces ESPnet's sos; the others join the cached prefix
        # an LM without eos token scores as before (no end column to move) under the legacy framing
        no_eos = tokenizer.eos_token_id is None and EOS_ALIAS in self.framing.end
        end = [] if no_eos else self.framing.end_ids(tokenizer)
        self.end_id: Optional[int] = end[0] if end else None
        self.eos_id: Optional[int] = (
            int(eos_id)
            if eos_id is not None
            else (int(tokenizer.eos_token_id) if tokenizer.eos_token_id is not None else None)
        )
        self._swap: Optional[Tuple[int, int]] = None  # (eos, end) columns exchanged
        if self.end_id is not None and self.eos_id is not None and self.end_id != self.eos_id:
            bad = [i for i in (self.end_id, self.eos_id) if i >= self.n_vocab]
            if bad:
                raise ValueError(
                    f"HfLmScorer: framing end id {self.end_id} / eos id {self.eos_id} outside the "
                    f"{self.n_vocab} scored tokens of {lm_path}"
                )
            self._swap = (self.eos_id, self.end_id)
        self._cache_kw = cache_kwarg(model)
        self._has_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._live_caches = LiveCaches()
        self.last_hidden: Optional[torch.Tensor] = None
        self.prefix_ids: Tuple[int, ...] = ()
        # what every hypothesis is read after: prefix_ids + all start tokens but the last
        self._context_ids: Tuple[int, ...] = self.start_ids[:-1]
        self._prefix_cache: Any = None  # KV cache of _context_ids (batch 1), built on first use

    def set_prefix(self, ids: Optional[Sequence[int]]) -> None:
        """LM ids placed before every hypothesis of the next utterance(s); None/empty: none.

        Call before decoding an utterance: hypothesis caches of the previous prefix are dropped.
        """
        ids = tuple(int(i) for i in (ids or ()))
        bad = [i for i in ids if not 0 <= i < self.lm_vocab]
        if bad:
            raise ValueError(f"prefix token id {bad[0]} out of range [0, {self.lm_vocab}) of the LM at {self.lm_path}")
        self.prefix_ids = ids
        self._context_ids = ids + self.start_ids[:-1]
        self._prefix_cache = None
        self._live_caches.clear()

    def lm_to_scored_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """LM token ids -> the ids the beam search scores (the framing's end token and ESPnet's
        eos exchanged when they differ; else unchanged)."""
        if self._swap is None:
            return ids
        eos, end = self._swap
        return torch.where(ids == end, eos, torch.where(ids == eos, end, ids))

    def identity(self) -> Dict[str, Any]:
        """The key-encoder identity a datastore queried with this scorer must have."""
        return lm_identity(self.lm_path, self.lm, self.tokenizer, self.layer)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # ------------------------------------------------------------------ ESPnet interface
    def init_state(self, x: Optional[torch.Tensor]) -> None:
        self._live_caches.clear()  # new utterance
        return None

    def select_state(self, state: Any, i: int, new_id: Optional[int] = None) -> Any:
        if state is None or isinstance(state, HfLmState):
            return state
        return state[i]

    def score(self, y: torch.Tensor, state: Any, x: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        """Next-token log-probs ``(n_vocab,)`` for one prefix ``y`` ``(L,)`` (an LM: ``x`` is not
        used and may be None, as for ESPnet's LMs)."""
        logp, states = self.batch_score(y.unsqueeze(0), [state], None)
        return logp[0], states[0]

    def batch_score(
        self, ys: torch.Tensor, states: Sequence[Any], xs: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[HfLmState]]:
        """``ys (n, L)`` prefixes -> ``(n, n_vocab)`` float32 log-probs and ``n`` states (``xs``
        is not used and may be None)."""
        logp, hidden, new_states = self.batch_score_with_hidden(ys, states, xs)
        self.last_hidden = hidden
        return logp, new_states

    @torch.no_grad()
    def batch_score_with_hidden(
        self, ys: torch.Tensor, states: Sequence[Any], xs: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, List[HfLmState]]:
        """Like :meth:`batch_score`, plus the query hidden states ``(n, D)`` (float32)."""
        n = ys.size(0)
        dev = self.device
        ys = ys.to(dev)
        logp = torch.empty(n, self.n_vocab, dtype=torch.float32, device=dev)
        hidden = torch.empty(n, self.hidden_size, dtype=torch.float32, device=dev)
        new_states: List[Optional[HfLmState]] = [None] * n
        groups = self._live_caches.group(states, ys.size(1))
        for (_, n_tokens), (cache, idx) in groups.items():
            index = torch.tensor(idx, device=dev)
            if cache is None:
                inputs, cache_in = self._lm_ids(ys[index]), self._prefix_rows(len(idx))
            else:
                inputs = ys[index, n_tokens:]
                cache_in = select_cache_rows(cache, [states[i].row for i in idx])
            g_logp, g_hidden, new_cache = self._forward(inputs, cache_in)
            logp[index] = g_logp
            hidden[index] = g_hidden
            ref = self._live_caches.remember(new_cache, ys.size(1))
            for row, i in enumerate(idx):
                new_states[i] = HfLmState(ref, row, ys.size(1))
        return logp, hidden, new_states  # type: ignore[return-value]

    # ------------------------------------------------------------------ helpers
    def _lm_ids(self, ys: torch.Tensor) -> torch.Tensor:
        """ESPnet prefix -> LM ids: the leading sos becomes the LM's start token."""
        ys = ys.clone()
        ys[:, 0] = self.start_id
        return ys

    def _forward(self, input_ids: torch.Tensor, cache: Any) -> Tuple[torch.Tensor, torch.Tensor, Any]:
        kwargs: Dict[str, Any] = {"use_cache": True, "output_hidden_states": True}
        if cache is not None:
            kwargs[self._cache_kw] = cache
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.lm(input_ids=input_ids, **kwargs)
        logits = out.logits[:, -1, : self.n_vocab].float()
        if self._swap is not None:  # the eos hypothesis gets the LM's "text ends" probability
            cols = list(self._swap)
            logits[:, cols] = logits[:, cols[::-1]]
        hidden = out.hidden_states[self.layer][:, -1].float()
        return torch.log_softmax(logits, dim=-1), hidden, output_cache(out)

    def _prefix_rows(self, n: int) -> Any:
        """The prefix KV cache repeated for ``n`` rows (a new cache), or None without prefix."""
        if not self._context_ids:
            return None
        if self._prefix_cache is None:
            ids = torch.tensor([self._context_ids], device=self.device)
            with torch.no_grad():
                self._prefix_cache = output_cache(self.lm(input_ids=ids, use_cache=True, **self._keep_kw()))
        return select_cache_rows(self._prefix_cache, [0] * n)

    def _keep_kw(self) -> Dict[str, Any]:
        return {"logits_to_keep": 1} if self._has_logits_to_keep else {}

    @torch.no_grad()
    def full_prefix_scores(self, ys: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reference without cache: ``ys (n, L)`` -> log-probs ``(n, V)``, hidden ``(n, D)``
        (over ``prefix_ids + start tokens + ys[1:]``)."""
        ids = self._lm_ids(ys.to(self.device))
        if self._context_ids:
            prefix = torch.tensor([self._context_ids], device=ids.device).expand(ids.size(0), -1)
            ids = torch.cat([prefix, ids], dim=1)
        logp, hidden, _ = self._forward(ids, None)
        return logp, hidden


def build_decode_scorer(ctx: DecodeScorerContext, path: str) -> HfLmScorer:
    """The ``hf_lm`` decode-time scorer (:mod:`espnet_llm_plugin.core.decode_scorers`): shallow
    fusion with the HF causal LM at ``path``, whose tokenizer must be the ASR token list."""
    return HfLmScorer(path, token_list=ctx.token_list, device=ctx.device, eos_id=int(ctx.asr_model.eos))
