"""Evidence that discrete units carry spoken content, from unit sequences + transcripts.

No alignments are needed; everything is an edit distance between whole unit sequences,
normalised by the longer length (NED, 0 = identical):

* ``same_text`` vs ``diff_text``: mean NED of utterance pairs with the same transcript (e.g.
  one sentence in several voices) vs different transcripts, and an ABX-like score: for a
  same-transcript pair (A, B) and a different-transcript X, how often NED(A, B) < NED(A, X),
  next to the same score computed from sequence lengths alone (same sentences have similar
  lengths, so that baseline is above 0.5 too), and a length-matched variant where X is one of
  the 5 different-transcript utterances closest in unit count to B (chance 0.5).
  Needs repeated transcripts; ``null`` when the data has none.
* ``text_correlation``: Spearman correlation, over random pairs, between the character NED of
  the transcripts and the NED of the unit sequences, next to a length-only baseline (the
  correlation of text NED with ``1 - min(len)/max(len)`` of the unit sequences), so a
  correlation that only reflects utterance length is visible as such. Split by same/different
  speaker when ``utt2spk`` is given.
* ``speaker``: mean NED of different-transcript pairs from the same vs different speakers
  (units that also encode the voice give a lower same-speaker NED).
* codebook usage: units used, perplexity of the unit distribution, mean length.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rapidfuzz.distance import Levenshtein
from scipy.stats import spearmanr


def normalized_edit_distance(a: Sequence, b: Sequence) -> float:
    """Levenshtein distance / max(len); 0.0 for two empty sequences."""
    n = max(len(a), len(b))
    return Levenshtein.distance(list(a), list(b)) / n if n else 0.0


def _spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def _length_distance(a: Sequence, b: Sequence) -> float:
    """``1 - min/max`` of the lengths: what a distance that sees only length would say."""
    return 1.0 - min(len(a), len(b)) / max(len(a), len(b), 1)


def _norm_text(t: str) -> str:
    return " ".join(t.lower().split())


def unit_quality(
    units: Dict[str, List[int]],
    text: Dict[str, str],
    utt2spk: Optional[Dict[str, str]] = None,
    num_units: Optional[int] = None,
    num_pairs: int = 2000,
    seed: int = 0,
) -> Dict[str, object]:
    """Compute the measures above for the utterances present in both ``units`` and ``text``
    (empty transcripts and empty unit sequences are left out).

    Returns:
        A JSON-able dict.
    """
    rng = np.random.default_rng(seed)
    utts = sorted(u for u in units if u in text and _norm_text(text[u]) and units[u])
    if len(utts) < 2:
        raise ValueError(
            f"unit_quality: {len(utts)} utterances with both units and a non-empty transcript; "
            "need at least 2 (do the units file and the data dir match?)"
        )
    tx = {u: _norm_text(text[u]) for u in utts}
    spk = {u: (utt2spk or {}).get(u) for u in utts}

    counts: Counter = Counter()
    for u in utts:
        counts.update(units[u])
    total = sum(counts.values())
    probs = np.array(list(counts.values()), dtype=np.float64) / total
    report: Dict[str, object] = {
        "utterances": len(utts),
        "mean_units_per_utt": total / len(utts),
        "units_used": len(counts),
        "num_units": num_units,
        "unit_perplexity": float(math.exp(-(probs * np.log(probs)).sum())),
    }

    # ---- same vs different transcript, ABX-like
    by_text: Dict[str, List[str]] = defaultdict(list)
    for u in utts:
        by_text[tx[u]].append(u)
    same_pairs = [(g[i], g[j]) for g in by_text.values() for i in range(len(g)) for j in range(i + 1, len(g))]
    if same_pairs:
        if len(same_pairs) > num_pairs:
            same_pairs = [same_pairs[i] for i in rng.choice(len(same_pairs), num_pairs, replace=False)]
        same, diff, wins, len_wins, matched_wins = [], [], 0.0, 0.0, 0.0
        lengths = np.array([len(units[u]) for u in utts])
        for a, b in same_pairs:
            x = utts[int(rng.integers(len(utts)))]
            while tx[x] == tx[a]:
                x = utts[int(rng.integers(len(utts)))]
            d_ab = normalized_edit_distance(units[a], units[b])
            d_ax = normalized_edit_distance(units[a], units[x])
            same.append(d_ab)
            diff.append(d_ax)
            wins += 1.0 if d_ab < d_ax else 0.5 if d_ab == d_ax else 0.0
            l_ab, l_ax = _length_distance(units[a], units[b]), _length_distance(units[a], units[x])
            len_wins += 1.0 if l_ab < l_ax else 0.5 if l_ab == l_ax else 0.0
            # X of about B's length (one of the 5 closest): length cannot decide this triple
            order = np.argsort(np.abs(lengths - len(units[b])), kind="stable")
            close = [utts[k] for k in order if tx[utts[k]] != tx[a]][:5]
            xm = close[int(rng.integers(len(close)))]
            d_axm = normalized_edit_distance(units[a], units[xm])
            matched_wins += 1.0 if d_ab < d_axm else 0.5 if d_ab == d_axm else 0.0
        report["same_text"] = {
            "pairs": len(same_pairs),
            "transcripts_repeated": sum(1 for g in by_text.values() if len(g) > 1),
            "mean_ned_same_text": float(np.mean(same)),
            "mean_ned_diff_text": float(np.mean(diff)),
            "abx_accuracy": wins / len(same_pairs),
            "abx_accuracy_length_only": len_wins / len(same_pairs),
            "abx_accuracy_length_matched": matched_wins / len(same_pairs),
        }
    else:
        report["same_text"] = None
        report["same_text_note"] = "no transcript occurs twice: same-transcript measures skipped"

    # ---- correlation with transcript distance over random pairs
    rows: List[Tuple[float, float, float, bool]] = []
    for _ in range(num_pairs):
        i, j = rng.choice(len(utts), 2, replace=False)
        a, b = utts[int(i)], utts[int(j)]
        rows.append(
            (
                normalized_edit_distance(tx[a], tx[b]),
                normalized_edit_distance(units[a], units[b]),
                _length_distance(units[a], units[b]),
                spk[a] is not None and spk[a] == spk[b],
            )
        )

    def corr(sel: List[Tuple[float, float, float, bool]]) -> Dict[str, object]:
        t = [r[0] for r in sel]
        return {
            "pairs": len(sel),
            "spearman_text_vs_units": _spearman(t, [r[1] for r in sel]),
            "spearman_text_vs_length_only": _spearman(t, [r[2] for r in sel]),
        }

    report["text_correlation"] = {"all": corr(rows)}
    if utt2spk:
        report["text_correlation"]["same_speaker"] = corr([r for r in rows if r[3]])
        report["text_correlation"]["diff_speaker"] = corr([r for r in rows if not r[3]])
        same_spk = [r[1] for r in rows if r[3] and r[0] > 0]
        diff_spk = [r[1] for r in rows if not r[3] and r[0] > 0]
        report["speaker"] = {
            "mean_ned_same_speaker": float(np.mean(same_spk)) if same_spk else None,
            "mean_ned_diff_speaker": float(np.mean(diff_spk)) if diff_spk else None,
        }
    return report
