"""The model card of a pack (its ``README.md``): what the model is, what it was trained on, its
results, the parts it needs and their licences, and how to decode with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from espnet_llm_plugin.packing import layout

PLUGIN_LICENCE = "Apache-2.0"
ESPNET_LICENCE = "Apache-2.0"


def _training_data(config: Dict[str, Any]) -> List[str]:
    """The training/validation data lists config.yaml names (pack-relative provenance)."""
    out = []
    for key in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
        for entry in config.get(key) or []:
            if isinstance(entry, (list, tuple)) and len(entry) >= 2:
                out.append(f"{key.split('_')[0]}: `{entry[0]}` ({entry[1]})")
    return out


def model_card(
    meta: Dict[str, Any],
    config: Dict[str, Any],
    decode: Dict[str, Any],
    work: Path,
    title: str = "",
    data_description: str = "",
) -> str:
    """The README.md text of the pack being written in ``work`` (results already copied)."""
    lines = [f"# {title or 'espnet-llm-plugin model'}", ""]
    parts = [f"encoder `{config.get('encoder')}`"]
    if config.get("postencoder"):
        parts.append(f"postencoder `{config.get('postencoder')}`")
    parts.append(f"decoder `{config.get('decoder')}`")
    lines += [
        f"An ESPnet ASR model ({', '.join(parts)}; model `{config.get('model')}`), packed by "
        f"espnet-llm-plugin {meta['plugin_version']} from `{meta['model']['packed_from']}` "
        f"({meta['model']['num_parameters']:,} stored parameters; frozen base weights are "
        f"referenced, not stored).",
        "",
    ]
    lines += ["## Data", ""]
    if data_description:
        lines += [data_description, ""]
    data = _training_data(config)
    lines += [f"- {d}" for d in data] or ["- (not recorded)"]
    lines += ["", "## Results", ""]
    md = [r for r in meta["results"] if r.endswith("RESULTS.md")]
    if md:
        text = (work / md[0]).read_text(encoding="utf-8")
        # demote the results' headings below this card's
        lines += [("##" + line) if line.startswith("#") else line for line in text.strip().splitlines()]
    elif meta["results"]:
        lines += [f"- `{r}`" for r in meta["results"]]
    else:
        lines += ["(no results were packed)"]
    lines += ["", "Decoded with `decode.yaml`:" if decode else "Decode options: ESPnet's defaults.", ""]
    if decode:
        lines += ["```yaml"] + [f"{k}: {v}" for k, v in decode.items()] + ["```", ""]
    lines += [
        "## Parts and licences",
        "",
        "| part | what | licence |",
        "|---|---|---|",
        f"| trained weights (`{layout.WEIGHTS}`) | this model's trained parameters | the trainer's choice |",
        f"| espnet-llm-plugin | code | {PLUGIN_LICENCE} |",
        f"| ESPnet | code | {ESPNET_LICENCE} |",
    ]
    for b in meta["bases"]:
        where = f"`prepare_pretrained {b['prepare_pretrained']}`" if b["prepare_pretrained"] else "your own copy"
        lines.append(
            f"| base `{b['name']}` ({', '.join(b['keys'])}) | not stored: sha256 `{b['sha256'][:16]}...`, "
            f"from {where} | {b['licence'] or 'see the base model'} |"
        )
    if meta.get("datastore"):
        ds = meta["datastore"]
        state = "included" if ds["included"] else "manifest only: pass knnlm_datastore=<dir> when decoding"
        lines.append(f"| kNN-LM datastore ({ds['entries']} entries) | {state} | the memory text's |")
    lines += [
        "",
        "## Use",
        "",
        "```sh",
        "python -m espnet_llm_plugin.bin.unpack_model THIS_PACK model_dir --base_dir DIR_WITH_BASES",
        "```",
        "",
        "```python",
        "from espnet_llm_plugin import Speech2Text",
        'speech2text = Speech2Text.from_packed("model_dir")',
        'print(speech2text("utterance.wav")[0].text)',
        "```",
        "",
    ]
    return "\n".join(lines)


__all__ = ["model_card"]
