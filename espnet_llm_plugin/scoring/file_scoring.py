"""Score a hypothesis Kaldi ``text`` file against a reference one (``score_wer``, ``tune_decode``).

:func:`score_files` gives the WER/CER counts as JSON-able dicts, :func:`format_result` the
summary lines, :func:`alignment_text` every utterance's sclite-style word alignment. An optional
:class:`~espnet_llm_plugin.core.text_form.TextForm` normalises both sides alike, then, if given,
the :class:`~espnet_llm_plugin.scoring.english_normaliser.EnglishScoringNormaliser` (numbers,
hyphens: Whisper-style normalised WER).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from espnet_llm_plugin.core.text_form import TextForm
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp
from espnet_llm_plugin.scoring.english_normaliser import EnglishScoringNormaliser
from espnet_llm_plugin.scoring.error_rate import align, format_alignment, score_corpus, tokens


def read_texts(
    ref: Path, hyp: Path, normaliser: TextForm = TextForm(), english: Optional[EnglishScoringNormaliser] = None
) -> tuple:
    """``(refs, hyps)``: utt id -> text of both files, normalised alike; hypothesis ids that
    are not in the reference are an error naming the file."""
    refs = read_scp(ref, allow_empty_value=True)
    hyps = read_scp(hyp, allow_empty_value=True)
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise DataDirError(f"{hyp}: {len(extra)} hypothesis ids not in {ref} (e.g. '{extra[0]}')")
    if not normaliser.is_identity:  # the LLM-side mapping of TextForm is the normaliser here
        refs = {u: normaliser.to_llm(t) for u, t in refs.items()}
        hyps = {u: normaliser.to_llm(t) for u, t in hyps.items()}
    if english is not None:
        refs = {u: english(t) for u, t in refs.items()}
        hyps = {u: english(t) for u, t in hyps.items()}
    return refs, hyps


def score_files(
    ref: Path, hyp: Path, normaliser: TextForm = TextForm(), english: Optional[EnglishScoringNormaliser] = None
) -> dict:
    refs, hyps = read_texts(ref, hyp, normaliser, english)
    missing = sorted(set(refs) - set(hyps))
    result = {
        "ref": str(ref),
        "hyp": str(hyp),
        "normaliser": {
            "case": normaliser.case,
            "punctuation": normaliser.punctuation,
            "english": english is not None,
        },
        "missing_hypotheses": len(missing),
        "wer": score_corpus(refs, hyps, "word").as_dict(),
        "cer": score_corpus(refs, hyps, "char").as_dict(),
    }
    return result


def format_result(result: dict) -> str:
    lines = []
    for unit in ("wer", "cer"):
        r = result[unit]
        lines.append(
            f"{unit.upper()} {r['error_rate']:.2f}% [ {r['errors']} / {r['ref_tokens']}, "
            f"{r['insertions']} ins, {r['deletions']} del, {r['substitutions']} sub ] "
            f"({r['utterances']} utts, {r['utterances_with_error']} with errors)"
        )
    if result["missing_hypotheses"]:
        lines.append(f"WARNING: {result['missing_hypotheses']} utterances had no hypothesis")
    return "\n".join(lines) + "\n"


def alignment_text(
    ref: Path, hyp: Path, normaliser: TextForm = TextForm(), english: Optional[EnglishScoringNormaliser] = None
) -> str:
    """Every reference utterance's word alignment (sclite layout), in reference order."""
    refs, hyps = read_texts(ref, hyp, normaliser, english)
    return "\n".join(
        format_alignment(u, align(tokens(r, "word"), tokens(hyps.get(u, ""), "word"))) for u, r in refs.items()
    )
