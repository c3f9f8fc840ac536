"""Per-utterance discrete unit sequences as a Kaldi-style text file.

One line per utterance, ``<utt_id> <unit> <unit> ...`` (non-negative ints, possibly none for
an utterance too short to give a frame after de-duplication). Written by ``dump_units``, read
by the speech+text LM trainer, the datastore builder and the n-best rescorer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from espnet_llm_plugin.fileio.atomic import atomic_file
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp


def read_units(path: str | Path, num_units: Optional[int] = None) -> Dict[str, List[int]]:
    """Read a units file into ``{utt_id: [unit, ...]}`` (file order kept).

    Raises:
        DataDirError: missing file, duplicate id, a value that is not an int, or a unit id
            outside ``[0, num_units)``; the message names the file and utterance.
    """
    out: Dict[str, List[int]] = {}
    for utt, value in read_scp(path, allow_empty_value=True).items():
        try:
            units = [int(tok) for tok in value.split()]
        except ValueError:
            raise DataDirError(f"{path}: utterance '{utt}' has a unit that is not an integer")
        for u in units:
            if u < 0 or (num_units is not None and u >= num_units):
                limit = f"[0, {num_units})" if num_units is not None else ">= 0"
                raise DataDirError(f"{path}: utterance '{utt}' has unit id {u}, outside {limit}")
        out[utt] = units
    return out


def write_units(path: str | Path, entries: Iterable[Tuple[str, Sequence[int]]]) -> None:
    """Write ``{utt_id: units}`` atomically, sorted by utterance id."""
    rows = sorted(entries, key=lambda kv: kv[0])
    with atomic_file(path) as f:
        for utt, units in rows:
            if not utt or any(c.isspace() for c in utt):
                raise DataDirError(f"{path}: invalid utterance id {utt!r}")
            f.write(utt + "".join(f" {int(u)}" for u in units) + "\n")


def dedup_units(units: Sequence[int]) -> List[int]:
    """Run-length de-duplication: ``[3, 3, 5, 5, 5, 3] -> [3, 5, 3]``."""
    out: List[int] = []
    for u in units:
        if not out or out[-1] != u:
            out.append(int(u))
    return out
