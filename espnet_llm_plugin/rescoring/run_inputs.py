"""What a rescoring run loads from its CLI options (:mod:`espnet_llm_plugin.rescoring.cli_options`):
the rescoring LM, and the n-best lists with their references and units, checked against each
other before the LM is loaded."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from espnet_llm_plugin.fileio.kaldi_data import read_scp
from espnet_llm_plugin.fileio.unit_file import read_units
from espnet_llm_plugin.rescoring.lm_scorer import LmScorer, check_units_cover
from espnet_llm_plugin.rescoring.nbest import (
    check_known_utterances,
    check_refs_covered,
    lm_score_kind,
    read_nbest,
    resolve_first_pass_score,
    score_kind_of,
)
from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder


def load_lm_scorer(args: argparse.Namespace, **kwargs) -> LmScorer:
    """The :class:`~espnet_llm_plugin.rescoring.lm_scorer.LmScorer` of the options of
    :func:`add_lm_options` (``kwargs``: more ``from_pretrained`` arguments)."""
    scorer = LmScorer.from_pretrained(
        str(args.lm_path),
        device=args.device,
        length_norm=args.length_norm,
        framing=args.framing,
        text_form=args.text_form,
        **kwargs,
    )
    logging.info(
        "rescoring LM %s: text form %s, framing %s", args.lm_path, scorer.text_form.to_dict(), scorer.framing.to_dict()
    )
    return scorer


def lm_usage_of(scorer: Union[LmScorer, KeyEncoder]) -> dict:
    """The text form and framing ``scorer`` (an LM scorer, or a kNN-LM's key encoder) used, as
    ``llm_usage.json`` sections (so an LM trained from it is read the same way later)."""
    return {"text_form": scorer.text_form.to_dict(), "framing": scorer.framing.to_dict()}


NbestInputs = Tuple[Dict[str, list], Optional[Dict[str, str]], Optional[Dict[str, List[int]]]]


def load_nbest_inputs(
    nbest_dir: Optional[Path],
    nbest_jsonl: Optional[Path],
    ref_text: Optional[Path],
    units_path: Optional[Path],
    what: str,
    allow_missing: bool = True,
    first_pass_score: Optional[str] = None,
    length_norm: bool = False,
) -> NbestInputs:
    """(n-best lists, references or None, units or None); every list must have a reference
    (when given) and units (when given), else a ValueError naming the files. References
    without an n-best list are refused unless ``allow_missing`` (then a warning names them).
    The first-pass scores are read in the kind of the LM's scores (``length_norm``; see
    :func:`~espnet_llm_plugin.rescoring.nbest.resolve_first_pass_score`): like with like."""
    source = nbest_dir if nbest_dir is not None else nbest_jsonl
    nbest = read_nbest(nbest_dir, nbest_jsonl, resolve_first_pass_score(first_pass_score, length_norm))
    kind, lm_kind = score_kind_of(nbest, str(source)), lm_score_kind(length_norm)
    if kind != lm_kind:  # only with --first_pass_score as_is
        logging.warning("%s: %s first-pass scores are combined as is with %s LM scores", source, kind, lm_kind)
    logging.info(
        "%s (%s): %d n-best lists, %d hypotheses", what, source, len(nbest), sum(len(h) for h in nbest.values())
    )
    refs = None
    if ref_text is not None:
        refs = read_scp(ref_text, allow_empty_value=True)
        check_known_utterances(nbest, refs, str(source), str(ref_text))
        check_refs_covered(nbest, refs, str(source), str(ref_text), allow_missing)
    units = None
    if units_path is not None:
        units = read_units(units_path)
        check_units_cover(nbest, units, str(units_path))
    return nbest, refs, units
