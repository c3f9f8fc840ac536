"""ESPnet-format results tables: ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|`` per unit.

ESPnet recipes publish ``RESULTS.md`` with one table per unit (WER, CER): the number of
sentences (Snt) and reference tokens (Wrd), then Corr/Sub/Del/Ins/Err as percentages of the
reference tokens and S.Err as the percentage of sentences with at least one error. These are
built from the ``result.json`` files ``score_wer`` writes (the ``wer`` / ``cer`` entries are
:meth:`~espnet_llm_plugin.scoring.error_rate.ErrorCounts.as_dict` dicts).
"""

from __future__ import annotations

from typing import List, Mapping, Sequence, Tuple

COLUMNS = ("dataset", "Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")


def _pct(count: float, total: float) -> str:
    if total == 0:
        return "0.0" if count == 0 else "inf"
    return f"{100.0 * count / total:.1f}"


def espnet_row(dataset: str, counts: Mapping[str, float]) -> str:
    """One table row from an :meth:`ErrorCounts.as_dict` dict."""
    n = counts["ref_tokens"]
    cells = [
        dataset,
        str(counts["utterances"]),
        str(n),
        _pct(counts["correct"], n),
        _pct(counts["substitutions"], n),
        _pct(counts["deletions"], n),
        _pct(counts["insertions"], n),
        _pct(counts["errors"], n),
        _pct(counts["utterances_with_error"], counts["utterances"]),
    ]
    return "|" + "|".join(cells) + "|"


def espnet_tables(results: Sequence[Tuple[str, Mapping[str, Mapping[str, float]]]]) -> str:
    """``### WER`` and ``### CER`` tables (ESPnet's layout) of ``(dataset, result.json)`` pairs.

    ``dataset`` is what ESPnet writes there: ``<decode dir>/<test set>``.
    """
    if not results:
        return ""
    out: List[str] = []
    for unit in ("wer", "cer"):
        out += [f"### {unit.upper()}", "", "|" + "|".join(COLUMNS) + "|", "|" + "---|" * len(COLUMNS)]
        out += [espnet_row(name, res[unit]) for name, res in results]
        out.append("")
    return "\n".join(out)
