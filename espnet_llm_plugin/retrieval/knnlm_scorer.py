"""kNN-LM (Khandelwal et al. 2020; used for ASR in arXiv 2406.09618) as an ESPnet batch scorer.

Per beam-search step, for all ``n`` hypotheses at once:

1. the base scorer gives next-token log-probs ``log p_lm (n, V)`` and a query ``(n, D)``:
   the hidden state at the last prefix position;
2. the datastore returns the ``k`` nearest keys' scores and values (next tokens);
3. ``p_knn(v) = sum_{j: value_j = v} softmax_j(s_j / T)`` with ``s = -distance`` (``l2``)
   or ``s = inner product`` (``ip``), ``T`` the temperature: ``temperature`` times the
   datastore's distance scale (:func:`espnet_llm_plugin.retrieval.datastore.distance_scale`;
   ``temperature_unit: absolute`` uses raw distances). Squared L2 distances between SmolLM2
   states are in the hundreds, so a raw temperature of 1 made ``p_knn`` a hard 1-NN;
4. the scorer returns ``log((1 - lambda) p_lm + lambda p_knn)`` (computed with ``logaddexp``).

``lambda = 0`` returns the base scores unchanged (no search is done).

``p_knn`` is zero outside the at most ``k`` retrieved tokens, so step 4 is done sparsely
(:func:`interpolate_knn`): ``log p_lm + log(1 - lambda)`` everywhere, ``logaddexp`` only at
the retrieved tokens. A dense ``(n, V)`` kNN distribution would cost a ``log`` of mostly zeros
(a slow path of the vectorised ``log``: ~2.7 ms per step for 5 x 8000 on one CPU core, ~45 ms
for 5 x 128k) and a full-vocabulary ``logaddexp``; the sparse form costs ``O(n k)`` plus one
add (~0.5 ms, mostly per-op overhead).

Base scorers: :class:`~espnet_llm_plugin.retrieval.hf_lm_scorer.HfLmScorer` (a separate HF LM,
the key encoder of the datastore), or :class:`DecoderQueryTap` around the LLM-ASR model's own
:class:`~espnet_llm_plugin.asr.llm_decoder.LlmDecoder` (the paper's setting: the decoder's
last hidden state is the query; build the datastore with the decoder's LLM as key encoder).

Multi-modal memory (arXiv 2406.09618): keys of a datastore built from ``--memory_units`` come
from ``<speech><unit_a>...</speech>`` + ``[bos] transcript`` windows of a speech+text LM
(:func:`espnet_llm_plugin.retrieval.document_store.multimodal_documents`). Queries are formed
the same way: :meth:`KnnLmScorer.set_query_context` takes the decoded utterance's units and
makes the span's token ids the base :class:`HfLmScorer`'s prefix, so each query is the hidden
state over ``speech_span(units) + [bos] + hypothesis`` (the span's KV cache is computed once
per utterance and shared by all hypotheses).
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import torch
from espnet.nets.scorer_interface import BatchScorerInterface

from espnet_llm_plugin.core.hf_causal_lm import unwrap_peft
from espnet_llm_plugin.core.unit_tokens import SPEECH_START, speech_span
from espnet_llm_plugin.retrieval.datastore import FaissDatastore
from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS, TEMPERATURE_UNITS, KnnLmSettings

UNITS_OPTION = "knnlm_units_from_data"


def datastore_is_multimodal(manifest: dict, tokenizer: Any) -> bool:
    """Whether a datastore's keys hold speech spans: its build info names a units file
    (``build_datastore --memory_units``); without build info, whether the key encoder's
    tokenizer has the speech tokens (a speech+text LM)."""

    build = (manifest.get("info") or {}).get("build")
    if isinstance(build, dict) and "memory_units" in build:
        return bool(build["memory_units"])
    return SPEECH_START in tokenizer.get_vocab()


def speech_prefix_ids(tokenizer: Any, units: Sequence[int]) -> List[int]:
    """Token ids of ``<speech><unit_a>...</speech>``, as multi-modal memory documents have them.

    Raises:
        ValueError: the tokenizer lacks the speech tokens or a unit token.
    """

    ids = list(tokenizer(speech_span(units), add_special_tokens=False).input_ids)
    if len(ids) != len(units) + 2:
        raise ValueError(
            "multi-modal kNN-LM query: a unit (or <speech>/</speech>) is not one token of the key "
            f"encoder's tokenizer (max unit id {max(units, default=-1)}): is it a speech+text LM with "
            "enough <unit_i> tokens?"
        )
    return [int(i) for i in ids]


def knn_log_probs(
    scores: torch.Tensor, values: torch.Tensor, n_vocab: int, temperature: float, metric: str
) -> torch.Tensor:
    """kNN distribution over the vocabulary.

    Args:
        scores: ``(n, k)`` distances (``l2``) or similarities (``ip``).
        values: ``(n, k)`` token ids, ``-1`` for a missing neighbour.

    Returns:
        ``(n, n_vocab)`` float32 log-probs (``-inf`` for tokens no neighbour has).
    """
    weights, valid = knn_weights(scores, values, temperature, metric)
    probs = torch.zeros(values.size(0), n_vocab, dtype=torch.float32, device=values.device)
    probs.scatter_add_(1, values.clamp_min(0), weights)
    zero = probs == 0  # log(0) is a slow path of the vectorised log: take log(1), then -inf
    return probs.masked_fill_(zero, 1.0).log_().masked_fill_(zero, float("-inf"))


def knn_weights(
    scores: torch.Tensor, values: torch.Tensor, temperature: float, metric: str
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Softmax weights ``(n, k)`` of the neighbours (0 for missing ones, value ``-1``) and the
    mask of present ones."""
    logits = (-scores if metric == "l2" else scores).float() / temperature
    valid = values >= 0
    logits = logits.masked_fill(~valid, float("-inf"))
    weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a row without neighbours -> 0
    return weights * valid, valid


def interpolate_knn(
    lm_logp: torch.Tensor,
    scores: torch.Tensor,
    values: torch.Tensor,
    lam: float,
    temperature: float,
    metric: str,
    pairwise: Optional[bool] = None,
) -> torch.Tensor:
    """``log((1 - lam) p_lm + lam p_knn)`` ``(n, V)`` without a dense kNN distribution.

    Args:
        lm_logp: ``(n, V)`` base log-probs.
        scores, values: ``(n, k)`` neighbour distances/similarities and token ids (``-1``: none).
        lam: ``0 < lam < 1``.
        pairwise: sum the weights of neighbours sharing a token by comparing the ``k`` values
            pairwise (``O(n k^2)``) or by a scatter into an ``(n, V)`` buffer; None: whichever
            is cheaper (``k^2 <= V``: pairwise).
    """
    lm_logp = lm_logp.float()  # float32 out, as the dense logaddexp with a float32 p_knn gave
    values = values.to(lm_logp.device)
    weights, valid = knn_weights(scores.to(lm_logp.device), values, temperature, metric)
    ids = values.clamp_min(0)
    k, n_vocab = values.size(1), lm_logp.size(1)
    if pairwise is None:
        pairwise = k * k <= n_vocab
    if pairwise:  # p_knn of each neighbour's token: the weights of all neighbours with that token
        same = ids.unsqueeze(2) == ids.unsqueeze(1)  # (n, k, k)
        p_knn = (same * weights.unsqueeze(1)).sum(2)
    else:
        dense = torch.zeros_like(lm_logp).scatter_add_(1, ids, weights)
        p_knn = dense.gather(1, ids)
    out = lm_logp + math.log1p(-lam)
    current = out.gather(1, ids)
    # a token with p_knn 0 (an underflowed weight) keeps its value: log(0) + log(lam) = -inf
    update = torch.logaddexp(current, p_knn.log() + math.log(lam))
    # missing neighbours write what their row's first present neighbour writes (same token,
    # same value), so scatter's order among duplicate indices cannot matter; a row with none
    # writes its unchanged value at token 0
    first = valid.float().argmax(1, keepdim=True)
    row_has = valid.any(1, keepdim=True)
    ids = torch.where(valid, ids, ids.gather(1, first))
    update = torch.where(valid, update, torch.where(row_has, update.gather(1, first), current))
    return out.scatter_(1, ids, update)


class KnnLmScorer(torch.nn.Module, BatchScorerInterface):
    """Base LM interpolated with a kNN distribution from a datastore.

    Args:
        base: a batch scorer with ``batch_score_with_hidden(ys, states) -> (logp, hidden, states)``
            and ``n_vocab`` (:class:`HfLmScorer` or :class:`DecoderQueryTap`).
        datastore: keys in the base's hidden space (check with the base's ``identity()``).
        lam: interpolation weight of the kNN distribution, ``0 <= lam <= 1``.
        k: neighbours per query.
        temperature: softmax temperature over ``-distance`` (> 0), in units of
            ``temperature_unit``.
        temperature_unit: ``distance_scale`` (the datastore's
            :attr:`~espnet_llm_plugin.retrieval.datastore.FaissDatastore.distance_scale`) or
            ``absolute`` (raw distances).
        multimodal: keys hold speech spans: every utterance needs :meth:`set_query_context`
            (the base must be an :class:`HfLmScorer`, whose tokenizer has the unit tokens).

    Defaults: :data:`espnet_llm_plugin.retrieval.knnlm_settings.DEFAULTS` (see
    :meth:`from_settings` for per-model ones).
    """

    def __init__(
        self,
        base: Any,
        datastore: FaissDatastore,
        lam: float = DEFAULTS.lam,
        k: int = DEFAULTS.k,
        temperature: float = DEFAULTS.temperature,
        multimodal: bool = False,
        temperature_unit: str = DEFAULTS.temperature_unit,
    ):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"knnlm lambda must be in [0, 1], got {lam}")
        if k < 1:
            raise ValueError(f"knnlm k must be >= 1, got {k}")
        if temperature <= 0:
            raise ValueError(f"knnlm temperature must be > 0, got {temperature}")
        if temperature_unit not in TEMPERATURE_UNITS:
            raise ValueError(
                f"knnlm temperature_unit must be one of {list(TEMPERATURE_UNITS)}, got {temperature_unit!r}"
            )
        if datastore.dim != base.hidden_size:
            raise ValueError(
                f"datastore keys have width {datastore.dim}, the query model's hidden size is {base.hidden_size}"
            )
        self.base = base
        self.datastore = datastore
        self.lam, self.k, self.temperature = float(lam), int(k), float(temperature)
        self.temperature_unit = temperature_unit
        # what the softmax divides by (raw distance units)
        self.softmax_temperature = self.temperature * (
            datastore.distance_scale if temperature_unit == "distance_scale" else 1.0
        )
        self.n_vocab = base.n_vocab
        if multimodal and not hasattr(base, "set_prefix"):
            raise ValueError(
                "a multi-modal datastore (speech-span keys) needs knnlm_query lm with the datastore's "
                f"speech+text key encoder as base LM, not {type(base).__name__}"
            )
        self.multimodal = bool(multimodal)
        self._context_set = False

    @classmethod
    def from_settings(
        cls, base: Any, datastore: FaissDatastore, settings: KnnLmSettings, multimodal: bool = False
    ) -> "KnnLmScorer":
        """A scorer with ``settings`` (e.g. from
        :func:`~espnet_llm_plugin.retrieval.knnlm_settings.resolve_knnlm_settings`)."""
        return cls(
            base, datastore, settings.lam, settings.k, settings.temperature, multimodal, settings.temperature_unit
        )

    def set_query_context(self, units: Optional[Sequence[int]]) -> None:
        """Set the decoded utterance's units (call once per utterance, before its beam search).

        Multi-modal datastore: the base LM's prefix becomes ``speech_span(units)``'s ids.
        Text-only datastore: ``units`` must be None.

        Raises:
            ValueError: multi-modal datastore and no units, or units for a text-only one.
        """
        if not self.multimodal:
            if units is not None:
                raise ValueError(
                    f"units were given ({UNITS_OPTION}), but the kNN-LM datastore is text-only; "
                    "drop the units data entry or use a multi-modal datastore"
                )
            return
        if units is None or len(units) == 0:
            raise ValueError(
                "the kNN-LM datastore is multi-modal (keys over <speech>units</speech> + text): it needs "
                f"the utterance's units; set {UNITS_OPTION}: true and pass "
                "--data_path_and_name_and_type <units file>,units,text_int"
            )
        units = [int(u) for u in units]
        if min(units) < 0:
            raise ValueError(f"multi-modal kNN-LM query: negative unit id {min(units)}")
        self.base.set_prefix(speech_prefix_ids(self.base.tokenizer, units))
        self._context_set = True

    # ------------------------------------------------------------------ ESPnet interface
    def init_state(self, x: Optional[torch.Tensor]) -> Any:
        return self.base.init_state(x)

    def select_state(self, state: Any, i: int, new_id: Optional[int] = None) -> Any:
        return self.base.select_state(state, i, new_id)

    def score(self, y: torch.Tensor, state: Any, x: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        """``(n_vocab,)`` interpolated log-probs of one prefix ``y (L,)``; ``x (T, D)`` goes to the
        base (None for an :class:`HfLmScorer` base, which reads no speech)."""
        logp, states = self.batch_score(y.unsqueeze(0), [state], None if x is None else x.unsqueeze(0))
        return logp[0], states[0]

    def batch_score(
        self, ys: torch.Tensor, states: Sequence[Any], xs: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[Any]]:
        """``(n, n_vocab)`` interpolated log-probs; all hypotheses' queries in one search.
        ``xs (n, T, D)`` goes to the base (may be None for an :class:`HfLmScorer` base)."""
        if self.multimodal and not self._context_set:
            raise ValueError(
                f"multi-modal kNN-LM: no units for this utterance (call set_query_context; {UNITS_OPTION})"
            )
        lm_logp, hidden, new_states = self.base.batch_score_with_hidden(ys, states, xs)
        if self.lam == 0.0:
            return lm_logp, new_states
        scores, values = self.search(hidden)
        T, metric = self.softmax_temperature, self.datastore.metric
        if self.lam == 1.0:
            return knn_log_probs(scores, values, self.n_vocab, T, metric).to(lm_logp.device), new_states
        return interpolate_knn(lm_logp, scores, values, self.lam, T, metric), new_states

    def search(self, queries: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(n, D)`` queries -> the ``k`` neighbours' scores ``(n, k)`` and values ``(n, k)``
        (on the datastore's search device: the query's for an exact torch search)."""
        scores, values = self.datastore.search_tensor(queries.detach(), self.k)
        # the base's framing may end texts with another token than the ASR model's eos: a
        # neighbour predicting "the text ends" must vote for the eos the beam search scores
        to_scored = getattr(self.base, "lm_to_scored_ids", None)
        if to_scored is not None:
            values = to_scored(values)
        # a next token outside the scored vocabulary (a unit token of a speech+text memory) is no
        # hypothesis: treat it as a missing neighbour
        return scores, values.masked_fill(values >= self.n_vocab, -1)


class DecoderQueryTap:
    """Expose an :class:`LlmDecoder`'s last hidden state as kNN query (paper setting).

    A forward hook on the LLM's final norm records its output; ``batch_score_with_hidden``
    calls the decoder's own KV-cached ``batch_score`` and returns the recorded state at the
    last position. Keys must come from the same LLM (``build_datastore --key_encoder`` = the
    decoder's ``llm_path``, ``--layer -1``).
    """

    def __init__(self, decoder: Any):

        lm = unwrap_peft(decoder.llm)
        norm = getattr(getattr(lm, "model", None), "norm", None)
        if norm is None:
            raise ValueError(
                "knnlm_query decoder: the decoder's LLM has no model.norm (a Llama-style final "
                "norm) to take the query from; use knnlm_query lm"
            )
        self.decoder = decoder
        self.n_vocab = decoder.vocab_size
        self.hidden_size = decoder.hidden_size
        self._captured: Optional[List[torch.Tensor]] = None  # collecting during batch_score only
        norm.register_forward_hook(self._on_norm)

    def _on_norm(self, module, inputs, output) -> None:
        if self._captured is not None:
            self._captured.append(output[:, -1].detach().float())

    def init_state(self, x: torch.Tensor) -> Any:
        return self.decoder.init_state(x)

    def select_state(self, state: Any, i: int, new_id: Optional[int] = None) -> Any:
        return self.decoder.select_state(state, i, new_id)

    def batch_score_with_hidden(self, ys: torch.Tensor, states: Sequence[Any], xs: torch.Tensor):
        """The decoder's ``batch_score`` plus its last hidden states ``(n, D)``."""
        # LlmDecoder runs one forward per group of hypotheses sharing a cache and length,
        # groups in order of first appearance; mirror that to put captured rows back in place
        groups: dict = {}
        for i, s in enumerate(states):
            cache = None if s is None else s.cache_ref()
            key = (-1, -1) if cache is None else (id(cache), s.n_tokens)
            groups.setdefault(key, []).append(i)
        self._captured = []
        try:
            logp, new_states = self.decoder.batch_score(ys, states, xs)
            captured = self._captured
        finally:
            self._captured = None
        if len(captured) != len(groups):
            raise RuntimeError(f"DecoderQueryTap: expected {len(groups)} decoder forward passes, saw {len(captured)}")
        hidden = torch.empty(ys.size(0), self.hidden_size, device=captured[0].device)
        for idx, h in zip(groups.values(), captured):
            hidden[torch.tensor(idx, device=h.device)] = h
        return logp, hidden, new_states
