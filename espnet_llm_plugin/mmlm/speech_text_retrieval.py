"""Speech<->text retrieval evaluation of a unit-extended LM on a held-out set.

Every utterance's speech (units) and every distinct transcript are embedded with the LM
(:func:`~espnet_llm_plugin.mmlm.contrastive.embed_sequences`); similarity is the cosine.
speech->text: each utterance queries the distinct transcripts (relevant: its own);
text->speech: each distinct transcript queries the utterances (relevant: all utterances
spoken with it). Utterances sharing a transcript are therefore never counted as errors.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from espnet_llm_plugin.mmlm.contrastive import (
    PoolingConfig,
    embed_sequences,
    speech_token_ids,
    text_token_ids,
)
from espnet_llm_plugin.mmlm.mixed_sequences import PairedUtterance
from espnet_llm_plugin.mmlm.recall import group_by_text, recall_at_k
from espnet_llm_plugin.mmlm.unit_vocab import UnitVocabInfo


def evaluate_retrieval(
    model: torch.nn.Module,
    tokenizer: Any,
    info: UnitVocabInfo,
    pairs: Sequence[PairedUtterance],
    pooling: PoolingConfig,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 32,
    device: Optional[torch.device] = None,
) -> Dict[str, Any]:
    """``{"speech_to_text": {R@k, mean_rank}, "text_to_speech": {...}, "utterances", "texts"}``."""
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 utterances to evaluate retrieval, got {len(pairs)}")
    texts, text_index, items = group_by_text([p.text for p in pairs])
    speech = embed_sequences(
        model,
        tokenizer,
        [speech_token_ids(tokenizer, info, p.units) for p in pairs],
        pooling,
        batch_size,
        device,
        desc="embedding speech",
    )
    text = embed_sequences(
        model, tokenizer, text_token_ids(tokenizer, texts), pooling, batch_size, device, desc="embedding text"
    )
    sim = speech @ text.T  # (N_utt, N_text), cosine: rows are L2-normalised
    return {
        "speech_to_text": recall_at_k(sim, text_index, ks),
        "text_to_speech": recall_at_k(sim.T, items, ks),
        "utterances": len(pairs),
        "texts": len(texts),
    }


MD_HEADER = "| model | set | utts | texts | S->T R@1 | S->T R@5 | S->T R@10 | T->S R@1 | T->S R@5 | T->S R@10 |"


def markdown_row(name: str, dataset: str, result: Dict[str, Any], ks: Sequence[int]) -> str:
    """One table row (recall in %); ``ks`` must be (1, 5, 10) to match :data:`MD_HEADER`."""
    cells = [name, dataset, str(result["utterances"]), str(result["texts"])]
    for side in ("speech_to_text", "text_to_speech"):
        cells += [f"{100 * result[side][f'R@{k}']:.1f}" for k in ks]
    return "| " + " | ".join(cells) + " |"


def update_markdown(existing: str, row: str) -> str:
    """``existing`` markdown with ``row`` appended to our table (created if absent)."""
    lines = existing.rstrip("\n").splitlines() if existing.strip() else []
    if MD_HEADER not in lines:
        sep = "|" + "---|" * (MD_HEADER.count("|") - 1)
        if lines:
            lines.append("")
        lines += ["## Speech<->text retrieval (Recall@k, %)", "", MD_HEADER, sep]
        lines.append(row)
        return "\n".join(lines) + "\n"
    # append after the last row of our table
    i = lines.index(MD_HEADER) + 2
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    lines.insert(i, row)
    return "\n".join(lines) + "\n"
