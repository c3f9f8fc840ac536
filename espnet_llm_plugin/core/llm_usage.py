"""Per-model usage defaults measured for an LLM: ``llm_usage.json`` beside its weights.

The file holds how our components should talk to that model (text form, prompt framing,
kNN-LM settings, ...), e.g.::

    {"text_form": {"case": "sentence", "punctuation": "keep"},
     "framing": {"start": ["<|endoftext|>"], "end": ["<|endoftext|>"]}}

``prepare_pretrained`` writes it for the models it prepares; a user may write one beside their
own LLM. A directory without it (tiny test models, a user's model) gets the legacy defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

USAGE_FILE = "llm_usage.json"


def llm_usage_path(llm_dir: Union[str, Path]) -> Path:
    return Path(llm_dir) / USAGE_FILE


def read_llm_usage(llm_dir: Optional[Union[str, Path]]) -> Dict[str, Any]:
    """The parsed ``<llm_dir>/llm_usage.json``, or ``{}`` when there is none.

    ``llm_dir`` may be ``None`` or a hub-style name that is not a local directory (no usage
    file can be read then). A file that is not a JSON object is an error naming the file.
    """
    if llm_dir is None:
        return {}
    path = llm_usage_path(llm_dir)
    if not path.is_file():
        return {}
    try:
        usage = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(usage, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(usage).__name__}")
    return usage


def usage_section(llm_dir: Optional[Union[str, Path]], key: str) -> Optional[Dict[str, Any]]:
    """One section (e.g. ``"framing"``) of the usage file, or ``None`` if absent.

    A section that is not an object is an error naming the file and key.
    """
    usage = read_llm_usage(llm_dir)
    if key not in usage:
        return None
    section = usage[key]
    if not isinstance(section, dict):
        raise ValueError(f"{llm_usage_path(llm_dir)}: {key!r} must be an object, got {type(section).__name__}")
    return section
