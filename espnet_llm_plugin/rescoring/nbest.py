"""N-best lists: read and write ESPnet's ``{n}best_recog`` decode layout and a plain JSONL form.

ESPnet's ``asr_inference`` writes, per rank ``n`` (1-based), ``DIR/{n}best_recog/`` with
``text`` (may lack an utterance whose text is None), ``token``, ``token_int`` and ``score``.
``score`` is the total beam score (the weighted sum of all scorers, i.e. ``Hypothesis.score``)
written with ``str()`` of a 0-d tensor: ``utt tensor(-7.3677)``; plain floats are read too.
Utterances may have fewer hypotheses than the deepest rank (a beam that ended early).

JSONL form, one line per utterance, hypotheses in rank order (``num_tokens`` and
``score_kind`` optional, see below)::

    {"utt_id": "u1", "hyps": [{"text": "a b", "score": -3.2, "scores": {"lm": -12.5},
                               "num_tokens": 3, "score_kind": "total"}, ...]}

**Score kinds.** What ``score`` holds is said by the manifest ``DIR/score_info.json``
(:data:`SCORE_INFO`): ``{"score_kind": "total"}``, a summed log score (ESPnet's beam score, and
the kind of a list without a manifest, so ESPnet's own lists read as before), or
``"per_token"``, a summed log score divided by the number of scored tokens (text tokens + the
end token), as Whisper ranks its beams; further fields name the source (model, beam size,
length penalty). Each :class:`Hypothesis` carries its ``score_kind`` and, where known, its
``num_tokens`` (``{n}best_recog/num_tokens``; else ESPnet's ``{n}best_recog/token`` + 1 for the
end token), which :func:`convert_score_kind` needs to turn one kind into the other.
:func:`read_espnet_nbest` returns totals by default, so an LM's total log-probability is
added to a score of the same kind.

Per-scorer scores (``scores``) are stored in the decode layout as extra files
``{n}best_recog/score_<name>``, so both forms round-trip exactly (floats are written with
``repr``). Empty hypotheses (``text`` ``""``: noise-only utterances) are valid and kept
everywhere; an utterance with no hypothesis at all (``"hyps": []``) is refused, since the decode
layout cannot hold it and it would vanish from the output. Scores must be finite: a NaN sorts
anywhere, so it would silently pick an arbitrary 1-best. A source with no utterance at all is
refused (tuning on it would tune on nothing).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_file
from espnet_llm_plugin.fileio.kaldi_data import read_scp

logger = logging.getLogger(__name__)


class NBestError(ValueError):
    """An n-best list that cannot be used; the message names the file and utterance."""


@dataclass
class Hypothesis:
    """One n-best entry: its text, first-pass (beam) score, and any further named scores.

    Attributes:
        num_tokens: the number of tokens ``score`` sums over (text tokens + end token); None
            when unknown (then the score cannot change kind).
        score_kind: ``total`` (summed log score) or ``per_token`` (divided by ``num_tokens``).
    """

    text: str
    score: float
    scores: Dict[str, float] = field(default_factory=dict)
    num_tokens: Optional[int] = None
    score_kind: str = "total"

    @property
    def num_words(self) -> int:
        return len(self.text.split())


NBest = Dict[str, List[Hypothesis]]  # utt_id -> hypotheses in rank order

SCORE_INFO = "score_info.json"
SCORE_KINDS = ("total", "per_token")
FIRST_PASS_SCORES = ("as_is", "total", "per_token")  # as_is: as written; else convert to that kind
NUM_TOKENS = "num_tokens"  # {n}best_recog/num_tokens: tokens behind each score

_RANK_DIR = re.compile(r"^(\d+)best_recog$")
_TENSOR = re.compile(r"^tensor\((.*?)(,.*)?\)$")


def parse_score(value: str, where: str) -> float:
    """``-7.3677``, or ESPnet's ``tensor(-7.3677)`` / ``tensor(-7.3677, device='cuda:0')``."""
    v = value.strip()
    m = _TENSOR.match(v)
    if m:
        v = m.group(1)
    try:
        x = float(v)
    except ValueError:
        raise NBestError(f"{where}: score {value!r} is not a number") from None
    return check_finite(x, where, value)


def check_finite(x: float, where: str, raw: object = None) -> float:
    """``x``, or :class:`NBestError` naming ``where`` (file, line, utterance) when NaN/inf."""
    if not math.isfinite(x):
        raise NBestError(
            f"{where}: score {raw if raw is not None else x!r} is not finite "
            f"(NaN/inf cannot be ranked; fix the scorer that wrote it)"
        )
    return x


def rank_dirs(decode_dir: str | Path) -> List[Path]:
    """``[1best_recog, 2best_recog, ...]`` of a decode dir, by rank; checks ranks are 1..N."""
    d = Path(decode_dir)
    if not d.is_dir():
        raise NBestError(f"n-best decode dir {d} does not exist")
    found = {}
    for p in d.iterdir():
        m = _RANK_DIR.match(p.name)
        if m and p.is_dir():
            found[int(m.group(1))] = p
    if not found:
        raise NBestError(f"{d} has no {{n}}best_recog directories (not an ESPnet decode dir)")
    ranks = sorted(found)
    if ranks != list(range(1, len(ranks) + 1)):
        raise NBestError(f"{d}: n-best ranks are not contiguous from 1: {ranks}")
    return [found[r] for r in ranks]


def read_score_info(decode_dir: str | Path) -> dict:
    """``DIR/score_info.json`` (checked), or ``{"score_kind": "total"}`` when it is absent."""
    path = Path(decode_dir) / SCORE_INFO
    if not path.is_file():
        return {"score_kind": "total"}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise NBestError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("score_kind") not in SCORE_KINDS:
        raise NBestError(f"{path}: score_kind must be one of {list(SCORE_KINDS)}, got {info!r}")
    return info


def write_score_info(decode_dir: str | Path, info: dict) -> None:
    """Write ``DIR/score_info.json`` atomically (``info["score_kind"]`` in :data:`SCORE_KINDS`)."""
    if info.get("score_kind") not in SCORE_KINDS:
        raise NBestError(f"score_kind must be one of {list(SCORE_KINDS)}, got {info.get('score_kind')!r}")
    with atomic_file(Path(decode_dir) / SCORE_INFO) as f:
        f.write(json.dumps(info, indent=1, sort_keys=True) + "\n")


def lm_score_kind(length_norm: bool) -> str:
    """The kind of a rescoring LM's scores: ``per_token`` when length-normalised, else ``total``."""
    return "per_token" if length_norm else "total"


def resolve_first_pass_score(first_pass_score: Optional[str], length_norm: bool) -> str:
    """The kind to read first-pass scores as, so that they combine like with like with the LM's
    scores: None -> the LM's kind (:func:`lm_score_kind`); an explicit kind must be the LM's;
    ``as_is`` is taken as asked (the caller warns when the kinds then differ).

    Raises:
        NBestError: a kind that is not the LM's (names both options).
    """
    lm_kind = lm_score_kind(length_norm)
    if first_pass_score is None:
        return lm_kind
    if first_pass_score not in FIRST_PASS_SCORES:
        raise NBestError(f"first_pass_score must be one of {list(FIRST_PASS_SCORES)}, got {first_pass_score!r}")
    if first_pass_score != "as_is" and first_pass_score != lm_kind:
        raise NBestError(
            f"--first_pass_score {first_pass_score} with --length_norm {str(length_norm).lower()} would add "
            f"{first_pass_score} first-pass scores to {lm_kind} LM scores; use --first_pass_score {lm_kind} "
            f"(or --length_norm {str(not length_norm).lower()})"
        )
    return first_pass_score


def score_kind_of(nbest: NBest, where: str) -> str:
    """The one score kind of every hypothesis of ``nbest`` (``total`` for an empty one);
    :class:`NBestError` naming an utterance of each kind when they are mixed."""
    first: Dict[str, str] = {}
    for utt, hyps in nbest.items():
        for h in hyps:
            if h.score_kind not in SCORE_KINDS:
                raise NBestError(f"{where}: utterance '{utt}': score_kind {h.score_kind!r} is not one of {SCORE_KINDS}")
            first.setdefault(h.score_kind, utt)
    if len(first) > 1:
        raise NBestError(
            f"{where}: scores of different kinds in one list (total at utterance '{first['total']}', "
            f"per_token at '{first['per_token']}'); they cannot be ranked together"
        )
    return next(iter(first), "total")


def convert_score_kind(nbest: NBest, kind: str, where: str) -> NBest:
    """``nbest`` (changed in place and returned) with every score of kind ``kind``:
    per-token -> total is ``score * num_tokens``, total -> per-token ``score / num_tokens``.
    A first-pass score kept by an earlier rescoring (``scores['first_pass']``) is converted
    alike. ``kind="as_is"`` changes nothing.

    Raises:
        NBestError: an unknown kind, or a hypothesis to convert without ``num_tokens``
            (names the utterance and ``where``).
    """
    if kind not in FIRST_PASS_SCORES:
        raise NBestError(f"first_pass_score must be one of {list(FIRST_PASS_SCORES)}, got {kind!r}")
    if kind == "as_is":
        return nbest
    for utt, hyps in nbest.items():
        for h in hyps:
            if h.score_kind == kind:
                continue
            if not h.num_tokens:
                raise NBestError(
                    f"{where}: utterance '{utt}': hypothesis {h.text!r} has a {h.score_kind} score but no "
                    f"token count ({{n}}best_recog/{NUM_TOKENS}), so it cannot become a {kind} score"
                )
            factor = float(h.num_tokens) if kind == "total" else 1.0 / h.num_tokens
            h.score *= factor
            if "first_pass" in h.scores:
                h.scores["first_pass"] *= factor
            h.score_kind = kind
    return nbest


def read_espnet_nbest(decode_dir: str | Path, first_pass_score: str = "total") -> NBest:
    """Read every ``{n}best_recog/{score,text,num_tokens,score_*}`` of an ESPnet decode dir.

    An utterance's hypotheses are the ranks where it has a ``score`` line; a missing ``text``
    line means an empty hypothesis. Utterance order follows ``1best_recog/score``. Every
    hypothesis gets the kind of ``score_info.json`` (``total`` without it) and its token count
    (``num_tokens``, else ESPnet's ``token`` + 1, else None). ``first_pass_score``: ``total``
    (default) or ``per_token`` converts the scores to that kind (:func:`convert_score_kind`);
    ``as_is`` keeps them as written.

    Raises:
        NBestError: no rank dirs, a rank without ``score``, a text without a score, an
            utterance at rank n but not at rank n-1, a score that is not a finite number, a
            bad ``score_info.json``, or a conversion without token counts.
    """
    if first_pass_score not in FIRST_PASS_SCORES:
        raise NBestError(f"first_pass_score must be one of {list(FIRST_PASS_SCORES)}, got {first_pass_score!r}")
    kind = read_score_info(decode_dir)["score_kind"]
    out: NBest = {}
    for rank, rdir in enumerate(rank_dirs(decode_dir), 1):
        score_file = rdir / "score"
        if not score_file.is_file():
            raise NBestError(f"{score_file}: missing (each {{n}}best_recog needs a score file)")
        scores = read_scp(score_file)
        texts = read_scp(rdir / "text", allow_empty_value=True) if (rdir / "text").is_file() else {}
        extra = [k for k in texts if k not in scores]
        if extra:
            raise NBestError(f"{rdir / 'text'}: utterance '{extra[0]}' has a text but no score")
        named = {}
        for f in sorted(rdir.glob("score_*")):
            named[f.name[len("score_") :]] = read_scp(f)
        counts = _token_counts(rdir, named.pop(NUM_TOKENS, None))  # score_num_tokens: older lists
        for utt, value in scores.items():
            if rank == 1:
                out[utt] = []
            elif utt not in out or len(out[utt]) != rank - 1:
                raise NBestError(f"{score_file}: utterance '{utt}' has rank {rank} but no rank {rank - 1}")
            hyp = Hypothesis(
                text=texts.get(utt, ""),
                score=parse_score(value, f"{score_file} '{utt}'"),
                num_tokens=counts.get(utt),
                score_kind=kind,
            )
            for name, table in named.items():
                if utt in table:
                    hyp.scores[name] = parse_score(table[utt], f"{rdir / ('score_' + name)} '{utt}'")
            out[utt].append(hyp)
    if not out:
        raise NBestError(f"{decode_dir}: 1best_recog/score lists no utterance (an empty decode)")
    return convert_score_kind(out, first_pass_score, str(decode_dir))


def _token_counts(rdir: Path, legacy: Optional[Dict[str, str]]) -> Dict[str, int]:
    """utt -> scored tokens of one rank dir: ``num_tokens``, else (ESPnet's lists) the tokens
    of ``token`` + 1 for the end token its beam score includes."""
    path = rdir / NUM_TOKENS
    if path.is_file() or legacy is not None:
        table = read_scp(path) if path.is_file() else legacy
        out = {}
        for utt, value in table.items():
            where = f"{path if path.is_file() else rdir / ('score_' + NUM_TOKENS)} '{utt}'"
            n = parse_score(value, where)
            if n < 1 or n != int(n):
                raise NBestError(f"{where}: token count {value!r} is not a positive integer")
            out[utt] = int(n)
        return out
    if (rdir / "token").is_file():
        return {utt: len(toks.split()) + 1 for utt, toks in read_scp(rdir / "token", allow_empty_value=True).items()}
    return {}


def write_espnet_nbest(nbest: NBest, decode_dir: str | Path, info: Optional[dict] = None) -> None:
    """Write ``DIR/{n}best_recog/{text,score,num_tokens,score_<name>}``, ``DIR/text`` (the
    1-best) and ``DIR/score_info.json`` (see :func:`write_espnet_files`), sorted by utterance
    id, replacing ``DIR`` atomically."""
    _check_ids(list(nbest), str(decode_dir))
    with atomic_dir(decode_dir) as tmp:
        write_espnet_files(nbest, tmp, info)


def write_espnet_files(nbest: NBest, decode_dir: Path, info: Optional[dict] = None) -> None:
    """Write the decode-dir files into an existing (e.g. temporary) directory; no atomicity.

    ``score_info.json`` says the hypotheses' score kind (all must have one kind), with the
    fields of ``info`` (source model, beam ...); it is written whenever the kind is not
    ``total`` or ``info`` is given (a total list without it reads the same).
    """
    utts = sorted(nbest)
    _check_ids(utts, str(decode_dir))
    _check_nonempty_lists(nbest, str(decode_dir))
    kind = score_kind_of(nbest, str(decode_dir))
    if info is not None and info.get("score_kind", kind) != kind:
        raise NBestError(f"{decode_dir}: score_info says {info['score_kind']!r}, the hypotheses' scores are {kind!r}")
    depth = max((len(nbest[u]) for u in utts), default=0)
    for rank in range(1, max(depth, 1) + 1):
        rdir = Path(decode_dir) / f"{rank}best_recog"
        rdir.mkdir(parents=True, exist_ok=True)
        rows = [(u, nbest[u][rank - 1]) for u in utts if len(nbest[u]) >= rank]
        names = sorted({n for _, h in rows for n in h.scores})
        for name in names:
            _check_score_name(name)
        (rdir / "text").write_text("".join(_text_line(u, h.text) for u, h in rows), encoding="utf-8")
        (rdir / "score").write_text("".join(f"{u} {h.score!r}\n" for u, h in rows), encoding="utf-8")
        for name in names:
            (rdir / f"score_{name}").write_text(
                "".join(f"{u} {h.scores[name]!r}\n" for u, h in rows if name in h.scores), encoding="utf-8"
            )
        if any(h.num_tokens is not None for _, h in rows):
            (rdir / NUM_TOKENS).write_text(
                "".join(f"{u} {h.num_tokens}\n" for u, h in rows if h.num_tokens is not None), encoding="utf-8"
            )
    (Path(decode_dir) / "text").write_text(
        "".join(_text_line(u, nbest[u][0].text) for u in utts if nbest[u]), encoding="utf-8"
    )
    if kind != "total" or info is not None:
        write_score_info(decode_dir, {**(info or {}), "score_kind": kind})


def read_nbest_jsonl(path: str | Path) -> NBest:
    """Read the JSONL form (see module docstring).

    Raises:
        NBestError: missing file, bad JSON, a missing/ill-typed field, or a duplicate utt_id;
            the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise NBestError(f"n-best JSONL {path} does not exist")
    out: NBest = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise NBestError(f"{where}: not valid JSON ({e})") from None
            utt = row.get("utt_id") if isinstance(row, dict) else None
            if not isinstance(utt, str) or not utt or any(c.isspace() for c in utt):
                raise NBestError(f"{where}: missing or invalid 'utt_id'")
            if utt in out:
                raise NBestError(f"{where}: duplicate utt_id '{utt}'")
            hyps = row.get("hyps")
            if not isinstance(hyps, list):
                raise NBestError(f"{where}: utterance '{utt}' has no 'hyps' list")
            if not hyps:
                raise NBestError(
                    f"{where}: utterance '{utt}' has an empty 'hyps' list (an empty "
                    f'hypothesis is {{"text": "", "score": ...}}; drop the line to skip it)'
                )
            out[utt] = [_hyp_from_json(h, f"{where} '{utt}'") for h in hyps]
    if not out:
        raise NBestError(f"n-best JSONL {path} holds no utterance (an empty file)")
    score_kind_of(out, str(path))  # one kind per list
    return out


def write_nbest_jsonl(nbest: NBest, path: str | Path) -> None:
    """Write the JSONL form atomically (utterances in the given order)."""
    _check_ids(list(nbest), str(path))
    _check_nonempty_lists(nbest, str(path))
    with atomic_file(path) as f:
        for utt, hyps in nbest.items():
            row = {"utt_id": utt, "hyps": [_hyp_to_json(h) for h in hyps]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_nbest(
    nbest_dir: Optional[str | Path] = None,
    nbest_jsonl: Optional[str | Path] = None,
    first_pass_score: str = "total",
) -> NBest:
    """Read exactly one of an ESPnet decode dir or a JSONL file, scores converted to
    ``first_pass_score`` (see :func:`read_espnet_nbest`; a JSONL hypothesis says its own kind)."""
    if (nbest_dir is None) == (nbest_jsonl is None):
        raise NBestError("give exactly one of an n-best decode dir or an n-best JSONL file")
    if nbest_dir is not None:
        return read_espnet_nbest(nbest_dir, first_pass_score)
    return convert_score_kind(read_nbest_jsonl(nbest_jsonl), first_pass_score, str(nbest_jsonl))


def check_known_utterances(nbest: NBest, known: Iterable[str], nbest_source: str, known_source: str) -> None:
    """Raise :class:`NBestError` naming the first n-best utterance that ``known`` lacks."""
    known = set(known)
    unknown = [u for u in nbest if u not in known]
    if unknown:
        raise NBestError(f"{nbest_source}: {len(unknown)} utterance(s) not in {known_source}, e.g. '{unknown[0]}'")


def _text_line(utt: str, text: str) -> str:
    return f"{utt} {text}\n" if text else f"{utt}\n"


def _check_ids(utts: List[str], where: str) -> None:
    for u in utts:
        if not u or any(c.isspace() for c in u):
            raise NBestError(f"{where}: invalid utterance id {u!r}")


def _check_nonempty_lists(nbest: NBest, where: str) -> None:
    empty = [u for u, hyps in nbest.items() if not hyps]
    if empty:
        raise NBestError(
            f"{where}: {len(empty)} utterance(s) have no hypothesis, e.g. '{empty[0]}' "
            f"(it would be missing from the output)"
        )


def check_refs_covered(
    nbest: NBest, refs: Iterable[str], nbest_source: str, ref_source: str, allow_missing: bool = False
) -> List[str]:
    """References without an n-best list (they score as all deletions): refused unless
    ``allow_missing``, then logged as a warning with their count and ids. Returns them."""
    missing = [u for u in refs if u not in nbest]
    if missing:
        shown = ", ".join(repr(u) for u in missing[:10]) + (", ..." if len(missing) > 10 else "")
        msg = (
            f"{len(missing)} of {len(list(refs))} utterance(s) in {ref_source} have no n-best list in "
            f"{nbest_source} (they count as all deletions): {shown}"
        )
        if not allow_missing:
            raise NBestError(msg + "; decode them, or pass --allow_missing_nbest true")
        logger.warning("%s", msg)
    return missing


def _check_score_name(name: str) -> None:
    if not name or any(c.isspace() or c in "/\\" for c in name):
        raise NBestError(f"invalid score name {name!r} (used in a file name score_<name>)")
    if name == NUM_TOKENS:
        raise NBestError(f"score name {name!r} is reserved: token counts are Hypothesis.num_tokens")


def _hyp_from_json(h: object, where: str) -> Hypothesis:
    if not isinstance(h, dict):
        raise NBestError(f"{where}: a hypothesis is not an object")
    text, score = h.get("text"), h.get("score")
    if not isinstance(text, str):
        raise NBestError(f"{where}: a hypothesis has no string 'text'")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise NBestError(f"{where}: hypothesis {text!r} has no numeric 'score'")
    check_finite(float(score), f"{where} hypothesis {text!r}")
    scores = h.get("scores", {})
    if not isinstance(scores, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()
    ):
        raise NBestError(f"{where}: hypothesis {text!r} has a non-numeric entry in 'scores'")
    for k in scores:
        _check_score_name(k)
        check_finite(float(scores[k]), f"{where} hypothesis {text!r} scores.{k}")
    num_tokens, kind = h.get("num_tokens"), h.get("score_kind", "total")
    if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1):
        raise NBestError(f"{where}: hypothesis {text!r}: num_tokens {num_tokens!r} is not a positive integer")
    if kind not in SCORE_KINDS:
        raise NBestError(f"{where}: hypothesis {text!r}: score_kind {kind!r} is not one of {list(SCORE_KINDS)}")
    return Hypothesis(
        text=text,
        score=float(score),
        scores={k: float(v) for k, v in scores.items()},
        num_tokens=num_tokens,
        score_kind=kind,
    )


def _hyp_to_json(h: Hypothesis) -> dict:
    d: Dict[str, object] = {"text": h.text, "score": h.score}
    if h.scores:
        d["scores"] = dict(h.scores)
    if h.num_tokens is not None:
        d["num_tokens"] = h.num_tokens
    if h.score_kind != "total":
        d["score_kind"] = h.score_kind
    return d
