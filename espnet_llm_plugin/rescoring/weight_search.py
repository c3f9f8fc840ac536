"""Score combination for n-best rescoring and a grid search of its weights on dev.

combined(h) = first_pass_weight * first_pass(h) + lm_weight * h.scores["lm"] + length_bonus * words(h)

where first_pass(h) is ``h.scores["first_pass"]`` when present (an already rescored list), else
``h.score``. The 1-best is the hypothesis with the highest combined score; ties keep the first-pass order
(stable sort), so ``lm_weight = length_bonus = 0`` reproduces the first pass exactly. The grid
search picks the weights with the lowest dev WER (S+D+I from
:mod:`espnet_llm_plugin.scoring.error_rate`); among equal WERs the first grid point wins, and the
grid is walked with small weights first.

Weights are tuned for one LM: the weights YAML records its identity (:func:`lm_identity`: path,
name, a sha256 of its weight files, and whether scores were length-normalised or conditioned on
units, and the kind of the first-pass scores: ``total`` or ``per_token``), and
:meth:`CombinationWeights.load` refuses weights tuned for another LM or another score kind. A
combined score that is not finite (a NaN LM score) is refused naming the utterance: NaN sorts
anywhere.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from espnet_llm_plugin.core.base_weights import base_content_hash
from espnet_llm_plugin.fileio.atomic import atomic_write_text
from espnet_llm_plugin.rescoring.nbest import Hypothesis, NBest, NBestError, check_finite
from espnet_llm_plugin.scoring.error_rate import ErrorCounts, align_counts, tokens

logger = logging.getLogger(__name__)

LM_SCORE = "lm"
FIRST_PASS_SCORE = "first_pass"


class WeightsConfigError(ValueError):
    """A weights YAML that cannot be used; names the file and key."""


# keys of the weights YAML that say which LM (and scoring) the weights were tuned for
LM_IDENTITY_KEYS = ("lm_path", "lm_name", "lm_weights_sha256", "length_norm", "units", "first_pass_kind")


def lm_identity(
    lm_path: str | Path, length_norm: bool = False, units: bool = False, first_pass_kind: str = "total"
) -> Dict[str, Any]:
    """What tuned weights depend on: the LM (path, directory name, sha256 over its weight files,
    :func:`~espnet_llm_plugin.core.base_weights.base_content_hash`; ``None`` when the directory
    holds no weight files), how its scores were computed, and the kind of the first-pass
    scores they were combined with (a weight tuned against per-token scores is meaningless
    against totals)."""

    try:
        digest: Optional[str] = base_content_hash(lm_path)
    except (ValueError, OSError):  # no weight files: the path is all we can compare
        digest = None
    return {
        "lm_path": str(lm_path),
        "lm_name": Path(lm_path).name,
        "lm_weights_sha256": digest,
        "length_norm": bool(length_norm),
        "units": bool(units),
        "first_pass_kind": first_pass_kind,
    }


def check_lm_identity(path: str | Path, recorded: Dict[str, Any], current: Dict[str, Any]) -> None:
    """Refuse weights tuned for another LM or another scoring (names both).

    The LM is the same when the weight hashes agree (a moved or copied LM is fine); without a
    hash on either side, when the paths agree. A weights file without any LM record (written
    before this check existed) is accepted with a warning.
    """
    if not any(k in recorded for k in LM_IDENTITY_KEYS):
        logger.warning(
            "%s records no LM identity: cannot check it was tuned for %s (retune to record it)",
            path,
            current.get("lm_path"),
        )
        return
    have, want = recorded.get("lm_weights_sha256"), current.get("lm_weights_sha256")
    same_lm = have == want if (have and want) else str(recorded.get("lm_path")) == str(current.get("lm_path"))
    if not same_lm:
        raise WeightsConfigError(
            f"{path}: weights were tuned for LM {recorded.get('lm_path')} (weights sha256 {have}), but the "
            f"LM is {current.get('lm_path')} (weights sha256 {want}); retune on dev with --tune true"
        )
    for key in ("length_norm", "units"):
        if key in recorded and bool(recorded[key]) != bool(current.get(key)):
            raise WeightsConfigError(
                f"{path}: weights were tuned with {key}={bool(recorded[key])}, this run has "
                f"{key}={bool(current.get(key))}; retune on dev with --tune true"
            )
    if recorded.get("knnlm") != current.get("knnlm"):  # the memory and its settings are part of the LM
        raise WeightsConfigError(
            f"{path}: weights were tuned with kNN-LM {recorded.get('knnlm')}, this run has "
            f"{current.get('knnlm')}; retune on dev with --tune true"
        )
    # weights files written before score kinds existed were tuned on total scores
    have_kind, want_kind = recorded.get("first_pass_kind", "total"), current.get("first_pass_kind", "total")
    if have_kind != want_kind:
        raise WeightsConfigError(
            f"{path}: weights were tuned on {have_kind} first-pass scores, this run has {want_kind} ones; "
            f"retune on dev with --tune true (or read the lists with --first_pass_score {have_kind})"
        )


@dataclass
class CombinationWeights:
    first_pass_weight: float = 1.0
    lm_weight: float = 0.0
    length_bonus: float = 0.0

    def combine(self, hyp: Hypothesis, lm_key: str = LM_SCORE, utt: str = "") -> float:
        """The combined score; a hypothesis from an earlier rescoring (``score`` = its combined
        score) contributes its ``scores['first_pass']``, so rescoring twice does not compound."""
        first_pass = hyp.scores.get(FIRST_PASS_SCORE, hyp.score)
        total = self.first_pass_weight * first_pass + self.length_bonus * hyp.num_words
        if self.lm_weight != 0.0:
            if lm_key not in hyp.scores:
                raise NBestError(f"hypothesis {hyp.text!r} has no '{lm_key}' score; score it with the LM first")
            total += self.lm_weight * hyp.scores[lm_key]
        where = f"utterance '{utt}': " if utt else ""
        return check_finite(
            total,
            f"{where}hypothesis {hyp.text!r}: combined score (score {hyp.score}, scores {hyp.scores}, "
            f"weights {asdict(self)})",
        )

    def save(self, path: str | Path, extra: Optional[dict] = None) -> None:
        """Write ``{first_pass_weight, lm_weight, length_bonus, **extra}`` as YAML, atomically."""
        data = asdict(self)
        if extra:
            data.update(extra)
        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: str | Path, lm: Optional[Dict[str, Any]] = None) -> "CombinationWeights":
        """Read the weights YAML; with ``lm`` (:func:`lm_identity` of this run's LM), refuse
        weights tuned for another one (:func:`check_lm_identity`)."""
        path = Path(path)
        if not path.is_file():
            raise WeightsConfigError(f"weights config {path} does not exist (tune on dev first: --tune true)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise WeightsConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise WeightsConfigError(f"{path}: expected a mapping with {list(asdict(cls()))}")
        kw = {}
        for key in asdict(cls()):
            if key not in data:
                raise WeightsConfigError(f"{path}: missing key '{key}'")
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise WeightsConfigError(f"{path}: key '{key}' must be a finite number, got {value!r}")
            kw[key] = float(value)
        if lm is not None:
            check_lm_identity(path, data, lm)
        return cls(**kw)


def rerank(
    hyps: Sequence[Hypothesis], weights: CombinationWeights, lm_key: str = LM_SCORE, utt: str = ""
) -> List[Hypothesis]:
    """Hypotheses sorted by combined score, best first; ties keep the given order. A score that
    is not finite raises :class:`NBestError` naming ``utt``."""
    keyed = [(weights.combine(h, lm_key, utt), i) for i, h in enumerate(hyps)]  # checks finiteness
    if weights.lm_weight == 0.0 and weights.length_bonus == 0.0 and weights.first_pass_weight > 0:
        return list(hyps)  # the first pass itself, whatever rounding its stored scores had
    keyed.sort(key=lambda t: -t[0])  # stable: equal scores keep rank order
    return [hyps[i] for _, i in keyed]


def rerank_all(nbest: NBest, weights: CombinationWeights, lm_key: str = LM_SCORE) -> NBest:
    """Rerank every list; each hypothesis keeps its first-pass score under
    ``scores['first_pass']`` and gets ``score`` = combined score."""
    out: NBest = {}
    for utt, hyps in nbest.items():
        ranked = rerank(hyps, weights, lm_key, utt)
        out[utt] = [
            replace(
                h,
                score=weights.combine(h, lm_key, utt),
                scores={**h.scores, FIRST_PASS_SCORE: h.scores.get(FIRST_PASS_SCORE, h.score)},
            )
            for h in ranked
        ]
    return out


def one_best(nbest: NBest, weights: Optional[CombinationWeights] = None, lm_key: str = LM_SCORE) -> Dict[str, str]:
    """``{utt: text}`` of the top hypothesis (an empty list gives an empty text)."""
    weights = weights or CombinationWeights()
    return {u: (rerank(h, weights, lm_key, u)[0].text if h else "") for u, h in nbest.items()}


def hypothesis_errors(nbest: NBest, refs: Dict[str, str], unit: str = "word") -> Dict[str, List[ErrorCounts]]:
    """Error counts of every hypothesis against its reference."""
    out = {}
    for utt, hyps in nbest.items():
        if utt not in refs:
            raise NBestError(f"n-best utterance '{utt}' has no reference")
        ref = tokens(refs[utt], unit)
        out[utt] = [align_counts(ref, tokens(h.text, unit)) for h in hyps]
    return out


def corpus_counts(
    choice: Dict[str, int], errors: Dict[str, List[ErrorCounts]], refs: Dict[str, str], unit: str = "word"
) -> ErrorCounts:
    """Counts of the chosen hypothesis per utterance; references without an n-best count as
    all deletions (as score_wer does for a missing hypothesis)."""
    total = ErrorCounts()
    for utt, ref in refs.items():
        if utt in errors and errors[utt]:
            total += errors[utt][choice[utt]]
        else:
            total += align_counts(tokens(ref, unit), [])
    return total


def oracle_counts(nbest: NBest, refs: Dict[str, str], unit: str = "word") -> ErrorCounts:
    """Counts when each utterance picks its lowest-error hypothesis (the n-best's floor)."""
    errors = hypothesis_errors(nbest, refs, unit)
    choice = {u: min(range(len(e)), key=lambda i: e[i].errors) if e else 0 for u, e in errors.items()}
    return corpus_counts(choice, errors, refs, unit)


def weights_counts(
    nbest: NBest,
    refs: Dict[str, str],
    weights: CombinationWeights,
    errors: Optional[Dict[str, List[ErrorCounts]]] = None,
    unit: str = "word",
) -> ErrorCounts:
    errors = errors if errors is not None else hypothesis_errors(nbest, refs, unit)
    choice = {}
    for utt, hyps in nbest.items():
        if hyps:
            top = rerank(hyps, weights, utt=utt)[0]
            choice[utt] = next(i for i, h in enumerate(hyps) if h is top)
    return corpus_counts(choice, errors, refs, unit)


def grid_search(
    nbest: NBest,
    refs: Dict[str, str],
    lm_weights: Sequence[float],
    length_bonuses: Sequence[float] = (0.0,),
    first_pass_weight: float = 1.0,
    unit: str = "word",
) -> Tuple[CombinationWeights, List[dict]]:
    """Try every ``(lm_weight, length_bonus)``; return the best weights and a table of
    ``{lm_weight, length_bonus, wer, errors, ref_tokens}`` rows."""
    if not lm_weights or not length_bonuses:
        raise ValueError("the weight grid is empty")
    if not any(nbest.values()):
        raise NBestError("no n-best hypotheses to tune on (empty n-best input)")
    if not refs:
        raise NBestError("no references to tune on (empty reference text)")
    if not all(math.isfinite(float(v)) for v in (*lm_weights, *length_bonuses, first_pass_weight)):
        raise ValueError(
            f"the weight grid holds a value that is not finite: lm_weights {list(lm_weights)}, "
            f"length_bonuses {list(length_bonuses)}, first_pass_weight {first_pass_weight}"
        )
    errors = hypothesis_errors(nbest, refs, unit)
    lm_sorted = sorted(lm_weights, key=abs)
    lb_sorted = sorted(length_bonuses, key=abs)
    best, best_err, table = None, None, []
    for lw, lb in itertools.product(lm_sorted, lb_sorted):
        w = CombinationWeights(first_pass_weight, float(lw), float(lb))
        c = weights_counts(nbest, refs, w, errors, unit)
        table.append(
            {
                "lm_weight": float(lw),
                "length_bonus": float(lb),
                "wer": c.error_rate,
                "errors": c.errors,
                "ref_tokens": c.ref_tokens,
            }
        )
        if best_err is None or c.errors < best_err:
            best, best_err = w, c.errors
    logger.info("grid search: best %s with %d errors", best, best_err)
    return best, table


def grid_search_scorings(
    scorings: Sequence[NBest],
    labels: Sequence[Any],
    label_key: str,
    refs: Dict[str, str],
    lm_weights: Sequence[float],
    length_bonuses: Sequence[float] = (0.0,),
    first_pass_weight: float = 1.0,
) -> Tuple[int, CombinationWeights, List[dict]]:
    """:func:`grid_search` over several scorings of the same lists (e.g. one per kNN-LM
    ``lambda``): the index of the best scoring (fewest errors; the first on ties), its weights,
    and every table row with ``{label_key: label}``."""
    if not scorings or len(scorings) != len(labels):
        raise ValueError(f"need one label per scoring, got {len(scorings)} scorings and {len(labels)} labels")
    best: Optional[Tuple[int, int, CombinationWeights]] = None
    table: List[dict] = []
    for i, (scored, label) in enumerate(zip(scorings, labels)):
        weights, rows = grid_search(scored, refs, lm_weights, length_bonuses, first_pass_weight)
        table += [{label_key: label, **row} for row in rows]
        errors = min(row["errors"] for row in rows)
        if best is None or errors < best[1]:
            best = (i, errors, weights)
    logger.info("best %s: %s (%d errors)", label_key, labels[best[0]], best[1])
    return best[0], best[2], table
