"""Measure how well a causal LM likes a text under several framings and text forms.

For each framing (the tokens before the text, the end token(s) after it, or the tokenizer's
chat template) and each text form (upper / lower / sentence case, with or without a final
period), the LLM's negative log-likelihood of every sentence is summed over

* the text tokens (``inner``: how well the LM predicts the words), and
* the end tokens (``end``: how readily it ends the sentence there; this is what lets beam
  search stop, and what an LM scorer adds for a complete hypothesis).

Word-level perplexity counts the recipe's words plus one end per sentence, the same
denominator for every text form (token counts differ: upper case splits into more tokens),
so rows are comparable. The per-model defaults in ``llm_usage.json`` are chosen from this
table (see :func:`recommend`).

Cost: end variants that share the tokens before their last token share one forward pass,
so a framing grid of S starts and E ends takes about ``S x (distinct end prefixes)`` passes
per text form, not ``S x E``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_llm_plugin.core.framing import LmFraming, chat_frame
from espnet_llm_plugin.core.text_form import TextForm

# Defaults for the grid; "<bos>"/"<eos>" are the tokenizer's own. A token the tokenizer
# lacks is skipped (reported), so one grid fits many models.
# A period before the end token is the text forms' ``final_period`` (the same numbers, one
# pass fewer); ``()`` (no start) is left out: its first word would go unscored.
DEFAULT_STARTS: Tuple[Tuple[str, ...], ...] = (("<bos>",), ("<eos>",), ("<|endoftext|>",))
DEFAULT_ENDS: Tuple[Tuple[str, ...], ...] = (("<eos>",), ("<|endoftext|>",))
DEFAULT_FORMS: Dict[str, TextForm] = {
    "upper": TextForm(case="upper"),
    "lower": TextForm(case="lower"),
    "sentence": TextForm(case="sentence"),
    "lower.": TextForm(case="lower", punctuation="final_period"),
    "sentence.": TextForm(case="sentence", punctuation="final_period"),
}
CHAT = "chat"


@dataclass
class SweepRow:
    """Totals of one (framing, text form) over all sentences."""

    start: str
    end: str
    text_form: str
    sentences: int
    words: int
    text_tokens: int
    end_tokens: int
    text_nll: float
    end_nll: float
    single_end_token: bool = True
    start_tokens: List[str] = field(default_factory=list)
    end_tokens_list: List[str] = field(default_factory=list)
    form: Dict[str, str] = field(default_factory=dict)

    @property
    def word_ppl(self) -> float:
        """exp(NLL of text + end / (words + sentences)): comparable across text forms."""
        return math.exp((self.text_nll + self.end_nll) / max(1, self.words + self.sentences))

    @property
    def inner_word_ppl(self) -> float:
        return math.exp(self.text_nll / max(1, self.words))

    @property
    def token_ppl(self) -> float:
        return math.exp((self.text_nll + self.end_nll) / max(1, self.text_tokens + self.end_tokens))

    @property
    def inner_token_ppl(self) -> float:
        return math.exp(self.text_nll / max(1, self.text_tokens))

    @property
    def end_nats(self) -> float:
        """Mean NLL of the end token(s) per sentence."""
        return self.end_nll / max(1, self.sentences)

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        for name in ("word_ppl", "inner_word_ppl", "token_ppl", "inner_token_ppl", "end_nats"):
            d[name] = getattr(self, name)
        return d


def _name(tokens: Sequence[str]) -> str:
    return " + ".join(tokens) if tokens else "none"


def _score(
    model, sequences: List[List[int]], targets_from: List[int], candidates: Sequence[int], batch_size: int
) -> Tuple[List[List[float]], List[List[float]]]:
    """One forward pass per batch: the log-probs of the tokens ``seq[targets_from[i]:]`` given
    what precedes them, and of each ``candidates`` id as the token after the whole sequence.

    Args:
        sequences: token ids per sequence (right-padded into batches here).
        targets_from: index of the first scored token per sequence (>= 1).
        candidates: ids scored as the next token after each sequence.

    Returns:
        per sequence: the scored tokens' log-probs, and the candidates' log-probs.
    """
    device = next(model.parameters()).device
    cand = torch.tensor(list(candidates), dtype=torch.long, device=device)
    tokens_lp: List[List[float]] = []
    next_lp: List[List[float]] = []
    for b in range(0, len(sequences), batch_size):
        chunk = sequences[b : b + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, s in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits  # (n, width, V)
            for i, s in enumerate(chunk):
                # only the valid positions of a row go through the (V-wide) log-softmax
                first = targets_from[b + i]
                logp = torch.log_softmax(logits[i, first - 1 : len(s)].float(), dim=-1)  # (m + 1, V)
                target = ids[i, first : len(s)]
                tokens_lp.append(logp[:-1].gather(-1, target.unsqueeze(-1)).squeeze(-1).tolist())
                next_lp.append(logp[-1, cand].tolist())
    return tokens_lp, next_lp


def _resolve(framing_tokens: Sequence[str], tokenizer) -> Optional[List[int]]:
    """Ids of a start/end candidate, or None when the tokenizer lacks one of its tokens."""
    f = LmFraming(start=tuple(framing_tokens), end=(), where="sweep")
    try:
        return f.start_ids(tokenizer)
    except ValueError:
        return None


def sweep(
    model,
    tokenizer,
    texts: Sequence[str],
    starts: Sequence[Sequence[str]] = DEFAULT_STARTS,
    ends: Sequence[Sequence[str]] = DEFAULT_ENDS,
    forms: Optional[Dict[str, TextForm]] = None,
    chat_prompt: Optional[str] = "Transcribe the speech.",
    batch_size: int = 32,
) -> Tuple[List[SweepRow], List[str]]:
    """Score ``texts`` (recipe form) under every start x end framing and text form.

    Args:
        model: HF causal LM (eval mode).
        tokenizer: its tokenizer.
        texts: sentences in the recipe's form (e.g. upper case, no punctuation).
        starts, ends: token-string tuples (``()`` start: the text opens the sequence; then
            its first token is context, not scored, for every form alike).
        forms: name -> text form; default :data:`DEFAULT_FORMS`.
        chat_prompt: user turn of the chat-template framing (the text is the assistant's
            answer, ended by the template's end-of-turn token); None: no chat row.
        batch_size: sequences per forward pass.

    Returns:
        rows, and notes (skipped candidates).
    """
    forms = dict(DEFAULT_FORMS if forms is None else forms)
    notes: List[str] = []
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no non-empty sentences to measure")
    words = sum(len(t.split()) for t in texts)

    start_ids: List[Tuple[str, List[str], List[int]]] = []
    seen_starts = set()
    for s in starts:
        ids = _resolve(s, tokenizer)
        if ids is None:
            notes.append(f"start {_name(s)}: not in the vocabulary, skipped")
            continue
        if tuple(ids) in seen_starts:
            notes.append(f"start {_name(s)}: same ids as an earlier start, skipped")
            continue
        seen_starts.add(tuple(ids))
        start_ids.append((_name(s), list(s), ids))
    end_ids: List[Tuple[str, List[str], List[int]]] = []
    seen_ends = set()
    for e in ends:
        ids = _resolve(e, tokenizer)
        if ids is None or not ids:
            notes.append(f"end {_name(e)}: not in the vocabulary, skipped")
            continue
        if tuple(ids) in seen_ends:
            notes.append(f"end {_name(e)}: same ids as an earlier end, skipped")
            continue
        seen_ends.add(tuple(ids))
        end_ids.append((_name(e), list(e), ids))
    chat = None
    if chat_prompt is not None:
        try:
            frame = chat_frame(tokenizer, chat_prompt, "", "sweep")
            chat = ("chat template", [], list(frame.prefix_ids) + list(frame.suffix_ids))
            chat_end = (tokenizer.convert_ids_to_tokens(frame.end_id), [frame.end_id])
        except ValueError as e:
            notes.append(f"chat template: {e}")

    rows: List[SweepRow] = []
    for form_name, form in forms.items():
        bodies = [tokenizer(form.to_llm(t), add_special_tokens=False)["input_ids"] for t in texts]
        plans = [(s, e_list) for s in start_ids for e_list in [end_ids]]
        if chat is not None:
            plans.append((chat, [(chat_end[0], [chat_end[0]], chat_end[1])]))
        for (s_name, s_tokens, s_ids), e_list in plans:
            # with no start token the first text token has no context: it is not scored
            skip_first = 0 if s_ids else 1
            first = max(1, len(s_ids))
            # end variants grouped by the tokens before their last one; the group without
            # such tokens (always run) also gives the text's log-likelihood
            by_prefix: Dict[Tuple[int, ...], List[Tuple[str, List[str], List[int]]]] = {(): []}
            for e in e_list:
                by_prefix.setdefault(tuple(e[2][:-1]), []).append(e)
            text_nll = 0.0
            for prefix, group in by_prefix.items():
                seqs = [s_ids + body + list(prefix) for body in bodies]
                tok_lp, last = _score(model, seqs, [first] * len(seqs), [g[2][-1] for g in group], batch_size)
                prefix_nll = -sum(sum(lp[len(lp) - len(prefix) :]) for lp in tok_lp) if prefix else 0.0
                if not prefix:
                    text_nll = -sum(sum(lp) for lp in tok_lp)
                for j, (e_name, e_tokens, e_ids) in enumerate(group):
                    end_nll = prefix_nll - sum(row[j] for row in last)
                    rows.append(
                        SweepRow(
                            start=s_name,
                            end=e_name,
                            text_form=form_name,
                            sentences=len(texts),
                            words=words,
                            text_tokens=sum(len(b) - skip_first for b in bodies),
                            end_tokens=len(e_ids) * len(texts),
                            text_nll=text_nll,
                            end_nll=end_nll,
                            single_end_token=len(e_ids) == 1,
                            start_tokens=s_tokens,
                            end_tokens_list=e_tokens,
                            form=form.to_dict(),
                        )
                    )
    return rows, notes


def recommend(rows: Sequence[SweepRow]) -> Dict[str, object]:
    """The ``llm_usage.json`` sections for the lowest word perplexity (text + end).

    Only framings with a single end token qualify (ESPnet's beam search stops on one eos
    id; a ``.`` before it belongs to the text form, ``final_period``), and the chat template
    is left to the LLM-ASR decoder's own ``chat_template`` switch.
    """
    usable = [r for r in rows if r.single_end_token and r.start != "chat template"]
    if not usable:
        raise ValueError("no row with a single end token to recommend from")
    best = min(usable, key=lambda r: r.word_ppl)
    form = dict(best.form)
    form.pop("recipe_case", None)  # the recipe's form is not the model's business
    return {
        "text_form": form,
        "framing": {"start": list(best.start_tokens), "end": list(best.end_tokens_list)},
    }


def format_table(rows: Sequence[SweepRow]) -> str:
    """Markdown table sorted by word perplexity."""
    lines = [
        "| start | end | text form | word ppl | inner word ppl | token ppl | inner token ppl | end nats |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r.word_ppl):
        lines.append(
            f"| {r.start} | {r.end} | {r.text_form} | {r.word_ppl:,.1f} | {r.inner_word_ppl:,.1f} | "
            f"{r.token_ppl:,.2f} | {r.inner_token_ppl:,.2f} | {r.end_nats:.2f} |"
        )
    return "\n".join(lines)
