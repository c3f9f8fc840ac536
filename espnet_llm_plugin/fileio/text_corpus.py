"""Plain-text corpora for LM training: one sentence a line, or Kaldi ``text`` (id first).

Read by the LM trainers (``train_text_lm``, ``mmlm_train``) and ``lm_framing_sweep``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List

logger = logging.getLogger(__name__)


class TextFileError(ValueError):
    """A text file that cannot be used for LM training."""


def read_text_lines(path: Path, has_ids: bool, option: str = "--train_text") -> List[str]:
    """Non-empty sentences of ``path`` (the utterance id removed when ``has_ids``)."""
    if not path.is_file():
        raise TextFileError(f"{option} {path}: file not found")
    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise TextFileError(f"{option} {path}: not UTF-8 text ({e})") from e
    rows = [line.strip() for line in raw if line.strip()]
    first_words = [r.split(maxsplit=1)[0] for r in rows]
    if has_ids:
        texts = [r.split(maxsplit=1)[1] if " " in r or "\t" in r else "" for r in rows]
        if len(set(first_words)) < len(first_words):
            logger.warning(
                "%s: first words repeat; if these are not utterance ids, pass %s false", path, _has_ids_option(option)
            )
    else:
        texts = rows
        # Kaldi ids are unique and usually carry digits; sentences seldom start that way
        if (
            len(rows) > 1
            and len(set(first_words)) == len(rows)
            and all(any(c.isdigit() for c in w) for w in first_words)
        ):
            logger.warning(
                "%s: every line starts with a unique word containing digits; if these are utterance ids, pass %s true",
                path,
                _has_ids_option(option),
            )
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise TextFileError(
            f"{option} {path}: no non-empty line" + (" after the utterance ids" if has_ids and rows else "")
        )
    return texts


def _has_ids_option(option: str) -> str:
    return "--dev_has_ids" if option == "--dev_text" else "--has_ids"
