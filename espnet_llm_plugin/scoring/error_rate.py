"""Levenshtein alignment of reference and hypothesis token sequences with S/D/I counts.

The alignment is RapidFuzz's (``rapidfuzz.distance.Levenshtein.opcodes``, C++, the engine
jiwer uses), on token lists, so words and characters align the same way. :func:`align` gives the
per-token alignment that ``result.txt`` shows (sclite style); :func:`align_counts` the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from rapidfuzz.distance import Levenshtein

# one aligned position: (op, reference token or None, hypothesis token or None), op in C S D I
AlignedToken = Tuple[str, Optional[str], Optional[str]]


@dataclass
class ErrorCounts:
    """Error counts summed over utterances."""

    ref_tokens: int = 0
    correct: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    utterances: int = 0
    utterances_with_error: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def error_rate(self) -> float:
        """Errors / reference tokens in percent (insertions into empty references make it
        undefined: reported as ``inf`` when there are errors and no reference tokens)."""
        if self.ref_tokens == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_tokens

    def __iadd__(self, other: "ErrorCounts") -> "ErrorCounts":
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def as_dict(self) -> Dict[str, float]:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["errors"] = self.errors
        d["error_rate"] = self.error_rate
        return d


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[AlignedToken]:
    """Minimum-edit alignment of one utterance, token by token (``C``orrect, ``S``ubstitution,
    ``D``eletion, ``I``nsertion), in reference order."""
    out: List[AlignedToken] = []
    for op in Levenshtein.opcodes(list(ref), list(hyp)):
        r, h = ref[op.src_start : op.src_end], hyp[op.dest_start : op.dest_end]
        if op.tag == "equal":
            out += [("C", a, b) for a, b in zip(r, h)]
        elif op.tag == "replace":  # paired one to one; any length difference is D or I
            n = min(len(r), len(h))
            out += [("S", a, b) for a, b in zip(r[:n], h[:n])]
            out += [("D", a, None) for a in r[n:]] + [("I", None, b) for b in h[n:]]
        elif op.tag == "delete":
            out += [("D", a, None) for a in r]
        else:
            out += [("I", None, b) for b in h]
    return out


def counts_of(alignment: Sequence[AlignedToken]) -> ErrorCounts:
    """:class:`ErrorCounts` of one aligned utterance."""
    ops = [op for op, _, _ in alignment]
    subs, dels, ins = ops.count("S"), ops.count("D"), ops.count("I")
    correct = ops.count("C")
    return ErrorCounts(
        ref_tokens=correct + subs + dels,
        correct=correct,
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        utterances=1,
        utterances_with_error=int(subs + dels + ins > 0),
    )


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Error counts of one utterance (minimum edit distance)."""
    return counts_of(align(ref, hyp))


def format_alignment(utt_id: str, alignment: Sequence[AlignedToken]) -> str:
    """sclite-style block: id, ``Scores: (#C #S #D #I)``, REF/HYP lines with errors upper-cased
    and ``***`` for a missing token, and an Eval line marking S/D/I under each column."""
    c = counts_of(alignment)
    ref_cols, hyp_cols, eval_cols = [], [], []
    for op, r, h in alignment:
        r_txt = "*" * len(h or "*") if r is None else (r if op == "C" else r.upper())
        h_txt = "*" * len(r or "*") if h is None else (h if op == "C" else h.upper())
        width = max(len(r_txt), len(h_txt), 1)
        ref_cols.append(r_txt.ljust(width))
        hyp_cols.append(h_txt.ljust(width))
        eval_cols.append(("" if op == "C" else op).ljust(width))
    return (
        f"id: ({utt_id})\n"
        f"Scores: (#C #S #D #I) {c.correct} {c.substitutions} {c.deletions} {c.insertions}\n"
        f"REF:  {' '.join(ref_cols).rstrip()}\n"
        f"HYP:  {' '.join(hyp_cols).rstrip()}\n"
        f"Eval: {' '.join(eval_cols).rstrip()}\n"
    )


def tokens(text: str, unit: str) -> List[str]:
    """Split a transcript into words (``unit='word'``) or characters (``'char'``, spaces
    dropped, as ESPnet's CER)."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return [c for c in "".join(text.split())]
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


def score_corpus(refs: Dict[str, str], hyps: Dict[str, str], unit: str) -> ErrorCounts:
    """Sum counts over ``refs``; a missing hypothesis counts as empty (all deletions)."""
    total = ErrorCounts()
    for utt, ref in refs.items():
        total += align_counts(tokens(ref, unit), tokens(hyps.get(utt, ""), unit))
    return total
