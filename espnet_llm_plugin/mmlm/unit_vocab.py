"""Extend a Hugging Face causal LM's vocabulary with discrete speech-unit tokens.

The tokens of :func:`~espnet_llm_plugin.core.unit_tokens.unit_token_list` (``<speech>``,
``</speech>``, ``<unit_0>`` ... ``<unit_{N-1}>``) are added to the tokenizer as special tokens,
after every existing token, so:

* every text token keeps its id and text tokenises exactly as before;
* the embedding rows of the text tokens are untouched, so for text-only input the logits
  over the original vocabulary are identical to the base model's (bit for bit) until training.

New rows (input embeddings and, when not tied, the output projection) start at the mean of the
existing rows plus small Gaussian noise drawn from a seeded generator (HF's own
``mean_resizing`` samples from the global RNG; ours is reproducible). Starting at the mean
keeps the untrained units' logits close to an average token's, not at an arbitrary scale.

A model may have more embedding rows than tokenizer entries (vocabularies padded to a multiple
of 64/128): the new ids then reuse those spare rows first, and the table only grows when needed.

The extended model is saved as an ordinary ``save_pretrained`` directory plus
``unit_vocab.json`` (:data:`UNIT_VOCAB_FILE`), and loads with ``from_pretrained``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm, unwrap_peft
from espnet_llm_plugin.core.unit_tokens import SPEECH_END, SPEECH_START, unit_token, unit_token_list
from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_write_text, default_file_modes

logger = logging.getLogger(__name__)

UNIT_VOCAB_FILE = "unit_vocab.json"


class UnitVocabError(ValueError):
    """The vocabulary cannot be extended, or an extended model's unit tokens are inconsistent."""


@dataclass
class UnitVocabInfo:
    """Where the unit tokens sit in an extended vocabulary (stored as ``unit_vocab.json``)."""

    num_units: int
    base_model: str  # path (or name) of the model that was extended
    base_vocab_size: int  # len(tokenizer) before extension: ids below it are text tokens
    base_embedding_rows: int  # embedding rows before extension
    speech_start_id: int
    speech_end_id: int
    first_unit_id: int  # <unit_i> has id first_unit_id + i
    seed: int = 0
    noise_std: float = 0.0

    def unit_ids(self, units: List[int]) -> List[int]:
        """Token ids of unit ids (range-checked)."""
        out = []
        for u in units:
            if not 0 <= int(u) < self.num_units:
                raise UnitVocabError(f"unit id {u} out of range [0, {self.num_units})")
            out.append(self.first_unit_id + int(u))
        return out


def _token_ids(tokenizer: Any, tokens: List[str]) -> List[Optional[int]]:
    vocab = tokenizer.get_vocab()
    return [vocab.get(t) for t in tokens]


def extend_with_units(
    model: torch.nn.Module,
    tokenizer: Any,
    num_units: int,
    seed: int = 0,
    noise_std: float = 0.01,
    base_model: str = "",
) -> UnitVocabInfo:
    """Add the unit tokens to ``tokenizer`` and grow ``model``'s embeddings, in place.

    Args:
        model: a Hugging Face causal LM (``get_input_embeddings`` / ``get_output_embeddings``).
        tokenizer: its tokenizer.
        num_units: number of discrete units (k-means clusters), > 0.
        seed: seed of the noise added to the new rows.
        noise_std: standard deviation of that noise, relative to the std of existing rows.
        base_model: recorded in the returned info.

    Raises:
        UnitVocabError: ``num_units`` invalid, or the tokenizer already has one of the tokens.
    """
    if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units <= 0:
        raise UnitVocabError(f"num_units must be a positive integer, got {num_units!r}")
    tokens = unit_token_list(num_units)
    present = [t for t, i in zip(tokens, _token_ids(tokenizer, tokens)) if i is not None]
    if present:
        raise UnitVocabError(
            f"the tokenizer already has {len(present)} of the unit tokens (e.g. "
            f"{', '.join(present[:3])}); extend the base model, not an extended one"
        )
    base_vocab = len(tokenizer)
    emb = model.get_input_embeddings()
    base_rows = int(emb.weight.shape[0])
    added = tokenizer.add_tokens(tokens, special_tokens=True)
    ids = _token_ids(tokenizer, tokens)
    expected = list(range(base_vocab, base_vocab + len(tokens)))
    if added != len(tokens) or ids != expected:
        raise UnitVocabError(
            f"the tokenizer did not give the unit tokens consecutive ids after {base_vocab} "
            f"(added {added} of {len(tokens)})"
        )
    new_size = max(base_rows, len(tokenizer))
    tied = _is_tied(model)
    if new_size > base_rows:
        model.resize_token_embeddings(new_size, mean_resizing=False)
    _init_rows(model.get_input_embeddings().weight, base_vocab, len(tokenizer), seed, noise_std)
    out = model.get_output_embeddings()
    if out is not None and not tied:
        _init_rows(out.weight, base_vocab, len(tokenizer), seed + 1, noise_std)
    info = UnitVocabInfo(
        num_units=num_units,
        base_model=str(base_model),
        base_vocab_size=base_vocab,
        base_embedding_rows=base_rows,
        speech_start_id=ids[0],
        speech_end_id=ids[1],
        first_unit_id=ids[2],
        seed=seed,
        noise_std=noise_std,
    )
    logger.info(
        "added %d unit tokens (ids %d..%d); embedding rows %d -> %d%s",
        len(tokens),
        ids[0],
        ids[-1],
        base_rows,
        new_size,
        " (tied output)" if tied else "",
    )
    return info


def _is_tied(model: torch.nn.Module) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


@torch.no_grad()
def _init_rows(weight: torch.Tensor, old: int, new: int, seed: int, noise_std: float) -> None:
    """Rows ``[old, new)`` := mean of rows ``[0, old)`` + noise (seeded, std relative)."""
    base = weight[:old].float()
    mean, std = base.mean(0), base.std(0).mean()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((new - old, weight.shape[1]), generator=g) * (noise_std * float(std))
    weight[old:new] = (mean.cpu() + noise).to(weight.dtype).to(weight.device)


def check_unit_tokens(tokenizer: Any, info: UnitVocabInfo, where: str = "") -> None:
    """Raise :class:`UnitVocabError` unless ``tokenizer`` has the unit tokens at ``info``'s ids."""
    tokens = unit_token_list(info.num_units)
    expected = [info.speech_start_id, info.speech_end_id] + [info.first_unit_id + i for i in range(info.num_units)]
    got = _token_ids(tokenizer, tokens)
    bad = [t for t, g, e in zip(tokens, got, expected) if g != e]
    if bad:
        raise UnitVocabError(f"{where}: the tokenizer's unit tokens do not match {UNIT_VOCAB_FILE} (e.g. {bad[0]})")


def read_unit_vocab(model_dir: Union[str, Path]) -> UnitVocabInfo:
    """The :class:`UnitVocabInfo` saved in ``model_dir`` (written by :func:`save_model_dir`)."""
    path = Path(model_dir) / UNIT_VOCAB_FILE
    if not path.is_file():
        raise UnitVocabError(
            f"{model_dir} has no {UNIT_VOCAB_FILE}: not a unit-extended LM (make one with extend_vocab)"
        )
    try:
        return UnitVocabInfo(**json.loads(path.read_text()))
    except (TypeError, json.JSONDecodeError) as e:
        raise UnitVocabError(f"{path}: unreadable ({e})") from e


def save_model_dir(
    out_dir: Union[str, Path],
    model: torch.nn.Module,
    tokenizer: Any,
    info: Optional[UnitVocabInfo] = None,
    json_files: Optional[Dict[str, Any]] = None,
) -> None:
    """``save_pretrained`` of model + tokenizer (+ ``unit_vocab.json`` and other JSON), atomically.

    The model keeps its dtype. A peft model must be merged first (it would save adapters only).
    """

    if unwrap_peft(model) is not model:
        raise ValueError("save_model_dir needs a plain HF model: merge LoRA first (merge_and_unload)")
    files = dict(json_files or {})
    if info is not None:
        files[UNIT_VOCAB_FILE] = asdict(info)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, obj in files.items():
            atomic_write_text(tmp / name, json.dumps(obj, indent=1) + "\n")
        default_file_modes(tmp)  # transformers writes the weights owner-only


def extend_model_dir(
    base_dir: Union[str, Path],
    out_dir: Union[str, Path],
    num_units: int,
    seed: int = 0,
    noise_std: float = 0.01,
    dtype: Optional[str] = None,
) -> UnitVocabInfo:
    """Load ``base_dir`` (``load_causal_lm``), extend it with units, save it to ``out_dir``."""

    model, tokenizer = load_causal_lm(base_dir, dtype=dtype, device="cpu")
    info = extend_with_units(
        model, tokenizer, num_units, seed=seed, noise_std=noise_std, base_model=str(Path(base_dir).resolve())
    )
    save_model_dir(out_dir, model, tokenizer, info)
    return info


__all__ = [
    "UNIT_VOCAB_FILE",
    "UnitVocabError",
    "UnitVocabInfo",
    "extend_with_units",
    "check_unit_tokens",
    "read_unit_vocab",
    "save_model_dir",
    "extend_model_dir",
    "SPEECH_START",
    "SPEECH_END",
    "unit_token",
]
