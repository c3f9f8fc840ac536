"""Sequence log-probabilities from a causal LM: text-only ``log p(text)`` or speech+text
``log p(text | units)``.

A scored sequence is ``start prefix text end``: ``start`` and ``end`` are the LM's framing
(:class:`~espnet_llm_plugin.core.framing.LmFraming`: its ``llm_usage.json``, else the legacy
``<bos>? ... </s>``). The score is the sum of the log-probs of the text tokens and the end
tokens (start and prefix are context only). Hypotheses come in the recipe's form (ESPnet
recipes: upper case, no punctuation) and are mapped to the form the LM reads first
(:class:`~espnet_llm_plugin.core.text_form.TextForm`, e.g. sentence case with a final period
for SmolLM2, whose per-word perplexity on upper-case text is ~15x that on sentence case):

* text-only LM: no prefix, ``to_llm(text)`` tokenised;
* speech+text LM: the string ``speech_span(units) + " " + to_llm(text)`` is tokenised as a
  whole (as the speech+text LM sees it in training); its first ``len(units) + 2`` ids are the
  ``<speech> <unit_i>... </speech>`` special tokens, the rest are the text tokens. An empty
  text gives ``speech_span(units)`` alone (no trailing space).

Batches are right-padded with an attention mask; padding cannot change a causal LM's outputs
at real positions, so batched scores equal one-by-one scores up to float rounding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from espnet_llm_plugin.core.device import resolve_device
from espnet_llm_plugin.core.framing import LEGACY_FRAMING, resolve_framing
from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.core.text_form import TextForm, resolve_text_form
from espnet_llm_plugin.core.unit_tokens import SPEECH_END, SPEECH_START, speech_span, unit_token
from espnet_llm_plugin.rescoring.nbest import NBest, check_finite

logger = logging.getLogger(__name__)


class LmScorerError(ValueError):
    """The LM/tokenizer cannot score what was asked (e.g. no unit tokens); says what is missing."""


@dataclass
class EncodedSequence:
    """Token ids of one scored sequence and how many leading ids are context only."""

    ids: List[int]
    num_context: int  # bos + speech prefix; scored tokens are ids[num_context:]


def sequence_logprobs(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor
) -> torch.Tensor:
    """Sum of log p(token_t | tokens_<t) over positions where ``target_mask`` is 1.

    Args:
        input_ids: (B, T) right-padded ids.
        attention_mask: (B, T) 1 for real tokens.
        target_mask: (B, T) 1 for tokens to score (position 0 is never scored: nothing predicts it).

    Returns:
        (B,) float32 sums; differentiable when called with grad enabled.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()  # (B, T-1, V)
    targets = input_ids[:, 1:]
    token_lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)  # (B, T-1)
    return (token_lp * target_mask[:, 1:].to(token_lp.dtype)).sum(-1)


class LmScorer:
    """Scores hypotheses with a causal LM, batched, without gradients.

    Args:
        model: a Hugging Face causal LM (``model(input_ids, attention_mask).logits``).
        tokenizer: its tokenizer.
        device: where to run (the model is moved there).
        batch_size: sequences per forward pass.
        length_norm: divide each score by its number of scored tokens (text tokens + end tokens).
        name: for error messages (the LM path).
        framing: :class:`~espnet_llm_plugin.core.framing.LmFraming` (None: legacy ``<bos>? text
            </s>``); it must end texts with at least one token (the score includes the end).
        text_form: :class:`~espnet_llm_plugin.core.text_form.TextForm` mapping hypotheses to
            what the LM reads (None: as they are).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        device: torch.device | str = "cpu",
        batch_size: int = 16,
        length_norm: bool = False,
        name: str = "LM",
        framing: Any = None,
        text_form: Any = None,
    ) -> None:

        if batch_size < 1:
            raise LmScorerError(f"batch_size must be >= 1, got {batch_size}")
        self.framing = LEGACY_FRAMING if framing is None else framing
        self.text_form = TextForm() if text_form is None else text_form
        try:
            self.start_ids = self.framing.start_ids(tokenizer)
            self.end_ids = self.framing.end_ids(tokenizer)
        except ValueError as e:
            raise LmScorerError(f"{name}: {e}") from None
        if not self.end_ids:
            raise LmScorerError(f"{name}: the framing has no end token; scores must include the end of the text")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.length_norm = length_norm
        self.name = name
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_ids[0]
        self.vocab_size = int(model.get_input_embeddings().weight.shape[0])

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 16,
        length_norm: bool = False,
        framing: Optional[Mapping[str, Any]] = None,
        text_form: Optional[Mapping[str, Any]] = None,
    ) -> "LmScorer":
        """Load a local HF dir through :func:`load_causal_lm` (clear errors on bad dirs).

        ``framing`` / ``text_form``: explicit values (e.g. ``--framing`` / ``--text_form``)
        laid over the dir's ``llm_usage.json``; without either, the legacy framing and the
        hypotheses as they are.
        """

        fr = resolve_framing(framing, path, "rescoring LM --framing")
        tf = resolve_text_form(text_form, path, "rescoring LM --text_form")
        dev = resolve_device(device)
        model, tokenizer = load_causal_lm(path, dtype=dtype, device=dev)
        return cls(
            model,
            tokenizer,
            dev,
            batch_size=batch_size,
            length_norm=length_norm,
            name=str(path),
            framing=fr,
            text_form=tf,
        )

    # ------------------------------------------------------------------ encoding
    def unit_prefix_ids(self, units: Sequence[int]) -> List[int]:
        """Ids of ``<speech> <unit_a> ... </speech>``; raises when the tokenizer lacks them."""
        tokens = [SPEECH_START] + [unit_token(u) for u in units] + [SPEECH_END]
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        unk = self.tokenizer.unk_token_id
        missing = [t for t, i in zip(tokens, ids) if i is None or (unk is not None and i == unk)]
        if missing:
            raise LmScorerError(
                f"{self.name}: the tokenizer has no speech/unit tokens ({', '.join(sorted(set(missing))[:5])}"
                f"{', ...' if len(set(missing)) > 5 else ''}); use a speech+text LM whose vocabulary "
                f"was extended with the unit tokens, or drop --units for text-only rescoring"
            )
        too_big = [t for t, i in zip(tokens, ids) if i >= self.vocab_size]
        if too_big:
            raise LmScorerError(
                f"{self.name}: token {too_big[0]} has an id outside the model's embedding table "
                f"({self.vocab_size} rows); the embeddings were not resized after adding unit tokens"
            )
        return list(ids)

    def encode(self, text: str, units: Optional[Sequence[int]] = None) -> EncodedSequence:
        """Ids of ``start [speech span] to_llm(text) end`` and the number of context ids
        (``text`` in the recipe's form)."""
        tok = self.tokenizer
        bos, end = list(self.start_ids), list(self.end_ids)
        text = self.text_form.to_llm(text) if text else text
        if units is None:
            text_ids = tok(text, add_special_tokens=False)["input_ids"] if text else []
            return EncodedSequence(bos + list(text_ids) + end, len(bos))
        prefix = self.unit_prefix_ids(units)
        joint = speech_span(units) + (" " + text if text else "")
        ids = list(tok(joint, add_special_tokens=False)["input_ids"])
        if ids[: len(prefix)] != prefix:
            raise LmScorerError(
                f"{self.name}: the tokenizer does not keep speech/unit tokens as single tokens "
                f"(add them as special tokens)"
            )
        return EncodedSequence(bos + ids + end, len(bos) + len(prefix))

    def collate(self, seqs: Sequence[EncodedSequence]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-pad to ``(input_ids, attention_mask, target_mask)``, each (B, T), on the device."""
        width = max(len(s.ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        tgt = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s.ids)] = torch.tensor(s.ids)
            att[i, : len(s.ids)] = 1
            tgt[i, s.num_context : len(s.ids)] = 1
        return ids.to(self.device), att.to(self.device), tgt.to(self.device)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_encoded(self, seqs: Sequence[EncodedSequence], progress: bool = False) -> List[float]:
        """Scores of encoded sequences, batched by length (sorted, then put back in order)."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].ids))
        out = [0.0] * len(seqs)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if progress:
            batches = tqdm(batches, desc="LM scoring", unit="batch")
        for idx in batches:
            batch = [seqs[i] for i in idx]
            lp = sequence_logprobs(self.model, *self.collate(batch)).cpu().tolist()
            for i, s, v in zip(idx, batch, lp):
                out[i] = v / (len(s.ids) - s.num_context) if self.length_norm else v
        return out

    def score(
        self, texts: Sequence[str], units: Optional[Sequence[Optional[Sequence[int]]]] = None, progress: bool = False
    ) -> List[float]:
        """``log p(text)`` (or ``log p(text | units)`` per item when ``units`` is given)."""
        if units is not None and len(units) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(units)} unit sequences")
        seqs = [self.encode(t, None if units is None else units[i]) for i, t in enumerate(texts)]
        return self.score_encoded(seqs, progress=progress)


def check_units_cover(nbest: NBest, units: Dict[str, List[int]], units_source: str = "units") -> None:
    """Raise :class:`LmScorerError` naming an n-best utterance that has no unit sequence."""
    missing = [u for u in nbest if u not in units]
    if missing:
        raise LmScorerError(
            f"{units_source}: no units for {len(missing)} of {len(nbest)} n-best utterance(s), "
            f"e.g. '{missing[0]}' (a units file of another data set?)"
        )
    extra = sum(1 for u in units if u not in nbest)
    if extra:
        logger.warning("%s: %d utterance(s) have units but no n-best list", units_source, extra)


def score_nbest(
    scorer: LmScorer,
    nbest: NBest,
    units: Optional[Dict[str, List[int]]] = None,
    progress: bool = False,
    key: str = "lm",
    units_source: str = "units",
) -> NBest:
    """Add ``scores[key]`` (LM log-prob, given the utterance's units when ``units`` is given)
    to every hypothesis, batched across utterances: a total log-probability, or per token with
    ``scorer.length_norm`` (:func:`~espnet_llm_plugin.rescoring.nbest.lm_score_kind`). A score
    that is not finite raises :class:`~espnet_llm_plugin.rescoring.nbest.NBestError` naming the
    utterance."""
    if units is not None:
        check_units_cover(nbest, units, units_source)
    flat = [(u, i) for u, hyps in nbest.items() for i in range(len(hyps))]
    seqs = [scorer.encode(nbest[u][i].text, None if units is None else units[u]) for u, i in flat]
    values = scorer.score_encoded(seqs, progress=progress)
    out: NBest = {u: [replace(h, scores=dict(h.scores)) for h in hyps] for u, hyps in nbest.items()}
    for (u, i), v in zip(flat, values):
        out[u][i].scores[key] = check_finite(v, f"LM score '{key}' of utterance '{u}', hypothesis {out[u][i].text!r}")
    return out
