"""Levenshtein alignment of reference and hypothesis token sequences with S/D/I counts.

Written in plain Python (no sclite): O(N*M) dynamic programming per utterance, which is
fast enough for test sets of thousands of short utterances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence


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


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Minimum-edit alignment of one utterance; ties prefer substitutions (as sclite)."""
    n, m = len(ref), len(hyp)
    # cost[j] for the current row; ops tracked as (S, D, I) alongside to recover counts
    prev = [(j, 0, 0, j) for j in range(m + 1)]  # (cost, S, D, I)
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            c, s, d, ins = prev[j - 1]
            if ref[i - 1] == hyp[j - 1]:
                diag = (c, s, d, ins)
            else:
                diag = (c + 1, s + 1, d, ins)
            c, s, d, ins = prev[j]
            dele = (c + 1, s, d + 1, ins)
            c, s, d, ins = cur[j - 1]
            inse = (c + 1, s, d, ins + 1)
            cur.append(min(diag, dele, inse, key=lambda t: t[0]))
        prev = cur
    cost, subs, dels, ins = prev[m]
    return ErrorCounts(
        ref_tokens=n,
        correct=n - subs - dels,
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        utterances=1,
        utterances_with_error=int(cost > 0),
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
