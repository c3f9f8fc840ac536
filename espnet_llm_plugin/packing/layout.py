"""What a pack holds, and the checks every pack passes.

A pack is a directory (or a ``.zip`` / ``.tar`` / ``.tar.gz`` archive of one)::

    pack.json            this layout's index: format version, the base models referenced (name,
                         content hash, prepare_pretrained name, licence), the file checksums
    README.md            model card (data, WER table, licences of the parts)
    config.yaml          the training config.yaml, every path relative to the pack
    model.safetensors    the trained parameters only (adapter, LoRA, heads, extended rows); a
                         frozen base is referenced by hash (see core/base_weights.py), not stored
    tokens.txt           the token list
    tokenizer/           the tokenizer files of a ``token_type: hugging_face`` model (the LLM's)
    assets/              other files the config names (sentencepiece model, feature statistics)
    decode.yaml          the decode options that produced the results (ESPnet's and ours)
    datastore/           a kNN-LM datastore's manifest.json (and, when packed with it, its index)
    results/             RESULTS.md and the score files of each test set
    bases/<name>         not in the pack: made by unpacking, a link to the base model found on
                         this machine after its content hash was checked

No pickles (weights are safetensors, the rest JSON/YAML/text) and no absolute paths of the
machine that packed it (:func:`check_no_machine_paths`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from espnet_llm_plugin.fileio.atomic import atomic_path, atomic_write_text
from espnet_llm_plugin.fileio.checksum import sha256_file

FORMAT = "espnet-llm-plugin-pack"
VERSION = 1
PACK_JSON = "pack.json"
CARD = "README.md"
CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
TOKENS = "tokens.txt"
TOKENIZER = "tokenizer"
ASSETS = "assets"
DECODE = "decode.yaml"
DATASTORE = "datastore"
RESULTS = "results"
BASES = "bases"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# text files that are checked for machine paths (weights are binary: their one string, the
# base reference path, is rewritten when packing)
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".txt", ".scp", "")


class PackError(ValueError):
    """A pack cannot be made or used; the message names the file, key or base model."""


def is_archive(path: Union[str, Path]) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def save_weights(state_dict: Dict[str, Any], path: Union[str, Path]) -> None:
    """Write a state dict as safetensors, atomically.

    Tensors sharing storage (tied weights) are copied apart: safetensors refuses shared ones.

    Raises:
        PackError: an entry is not a tensor (naming it).
    """
    out: Dict[str, torch.Tensor] = {}
    seen = set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise PackError(
                f"model state entry {key} is a {type(value).__name__}, not a tensor: cannot store it as safetensors"
            )
        t = value.detach().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[key] = t.contiguous()
    with atomic_path(path) as tmp:
        save_file(out, str(tmp), metadata={"format": "pt", "written_by": FORMAT})


def load_weights(path: Union[str, Path], device: str = "cpu") -> Dict[str, torch.Tensor]:
    """The state dict of a safetensors file (no code runs while reading it).

    Raises:
        PackError: the file is missing or not a safetensors file (naming it).
    """
    p = Path(path)
    if not p.is_file():
        raise PackError(f"{p}: weights file not found")
    try:
        return load_file(str(p), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise PackError(f"{p}: not a readable safetensors file ({e})") from None


def file_checksums(root: Path) -> Dict[str, Dict[str, Any]]:
    """``{relative path: {"sha256", "size"}}`` of every file of a pack except pack.json and the
    base links (those belong to the machine that unpacked it)."""
    out: Dict[str, Dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == PACK_JSON or rel.split("/")[0] == BASES or not p.is_file() or p.is_symlink():
            continue
        out[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return out


def write_meta(root: Path, meta: Dict[str, Any]) -> None:
    atomic_write_text(root / PACK_JSON, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(root: Path) -> Dict[str, Any]:
    """``pack.json`` of the pack directory ``root``, its format and version checked.

    Raises:
        PackError: not a pack, or one of a newer format (naming the file).
    """
    path = root / PACK_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(f"{root} is not a packed model: no {PACK_JSON}") from None
    except json.JSONDecodeError as e:
        raise PackError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PackError(f"{path}: not an espnet-llm-plugin pack (format {FORMAT!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise PackError(
            f"{path}: pack format version {meta.get('version')} is newer than this "
            f"espnet-llm-plugin reads ({VERSION}); upgrade espnet-llm-plugin"
        )
    return meta


def verify_files(root: Path, meta: Dict[str, Any]) -> None:
    """Every file listed in ``pack.json`` is there with its size and sha256.

    Raises:
        PackError: naming the first file that is missing or differs.
    """
    for rel, info in sorted((meta.get("files") or {}).items()):
        p = root / rel
        if not p.is_file():
            raise PackError(f"{p} is missing (listed in {root / PACK_JSON}): an incomplete copy of the pack")
        if p.stat().st_size != info["size"] or sha256_file(p) != info["sha256"]:
            raise PackError(
                f"{p} differs from the file that was packed (size or sha256 in "
                f"{root / PACK_JSON}): a damaged copy of the pack"
            )


def check_no_machine_paths(root: Path, forbidden: Iterable[str]) -> None:
    """Refuse a pack whose text files hold any of ``forbidden`` (absolute directories of the
    machine that packed it).

    Raises:
        PackError: naming the file and the path found in it.
    """
    needles: List[str] = sorted(
        {str(f).rstrip("/") for f in forbidden if str(f).rstrip("/") not in ("", "/")}, key=len, reverse=True
    )
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink() or p.suffix not in TEXT_SUFFIXES:
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        for needle in needles:
            if needle in text:
                raise PackError(
                    f"{p.relative_to(root)} holds the machine path {needle}: a pack must "
                    f"be usable elsewhere (report this as a bug of pack_model)"
                )


__all__ = [
    "ARCHIVE_SUFFIXES",
    "ASSETS",
    "BASES",
    "CARD",
    "CONFIG",
    "DATASTORE",
    "DECODE",
    "FORMAT",
    "PACK_JSON",
    "PackError",
    "RESULTS",
    "TOKENIZER",
    "TOKENS",
    "VERSION",
    "WEIGHTS",
    "check_no_machine_paths",
    "file_checksums",
    "is_archive",
    "load_weights",
    "read_meta",
    "save_weights",
    "verify_files",
    "write_meta",
]
