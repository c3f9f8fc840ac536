"""Refuse token strings ESPnet would silently misread, before a model is built.

ESPnet looks ``model_conf.sym_sos``/``sym_eos`` up in the token list and falls back to the last
id when they are missing; an LLM decoder also needs them to be its tokenizer's text-end token.
:func:`check_llm_token_config` checks both on the merged task arguments (YAML + command line)
and names the key and the file that set it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List, Optional, Tuple

from transformers import AutoTokenizer

from espnet_llm_plugin.asr.llm_decoder import text_frame
from espnet_llm_plugin.config_check import ConfigError, load_yaml_mapping
from espnet_llm_plugin.core.hf_causal_lm import check_llm_dir
from espnet_llm_plugin.core.text_form import resolve_text_form

SYMBOL_KEYS = ("sym_sos", "sym_eos")
LLM_DECODERS = ("llm", "llm_xattn")


def _read_token_list(token_list: Any) -> Tuple[Optional[List[str]], str]:
    """ESPnet's ``token_list`` (a file or a list) -> ``(tokens or None, how to name it)``."""
    if isinstance(token_list, (list, tuple)):
        return [str(t) for t in token_list], "the token list"
    if isinstance(token_list, (str, Path)) and Path(token_list).is_file():
        with open(token_list, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f], f"token list {token_list}"
    return None, f"token list {token_list}"


def check_llm_token_config(args: argparse.Namespace, config_path: Optional[str | Path]) -> None:
    """Refuse token strings ESPnet would silently misread, before any model is built.

    ESPnet looks ``model_conf.sym_sos``/``sym_eos`` up in the token list and falls back to the
    last id when they are missing (for SmolLM2 '</s>' becomes 'ectable'). With an LLM decoder
    (``decoder: llm``/``llm_xattn`` with ``decoder_conf.llm_path``) the symbols must also be
    tokens of the LLM's vocabulary and its text-end token, and the framing
    (``text_start``/``text_end``/``chat_template``) and ``text_form`` must resolve.

    Args:
        args: ESPnet's parsed task arguments (YAML and command line merged).
        config_path: the ``--config`` file, named in errors for keys it sets.

    Raises:
        ConfigError: naming the key and the file (config, token list or LLM directory).
    """
    yaml_conf = load_yaml_mapping(config_path) if config_path is not None else {}

    def source(section: str, *keys: str) -> str:
        """The config file when it sets one of ``section.keys``, else the command line."""
        written = yaml_conf.get(section) if isinstance(yaml_conf.get(section), dict) else {}
        return str(config_path) if any(k in written for k in keys) else "command line"

    model_conf = dict(getattr(args, "model_conf", None) or {})
    symbols = {
        k: model_conf[k]
        for k in SYMBOL_KEYS
        if isinstance(model_conf.get(k), str) and model_conf[k].strip().lower() != "auto"
    }
    tokens, token_list_name = _read_token_list(getattr(args, "token_list", None))
    if tokens is not None:
        for key, value in symbols.items():
            if value not in tokens:
                raise ConfigError(
                    f"{source('model_conf', key)}: model_conf.{key}: {value!r} is not in the "
                    f"{token_list_name}; ESPnet would silently use the last token instead"
                )
    decoder_conf = dict(getattr(args, "decoder_conf", None) or {})
    if str(getattr(args, "decoder", "") or "").lower() not in LLM_DECODERS or not decoder_conf.get("llm_path"):
        return

    llm_path = str(decoder_conf["llm_path"])
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(check_llm_dir(llm_path)), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{source('decoder_conf', 'llm_path')}: decoder_conf.llm_path: {e}") from e
    vocab = tokenizer.get_vocab()
    for key, value in symbols.items():
        if value not in vocab:
            raise ConfigError(
                f"{source('model_conf', key)}: model_conf.{key}: {value!r} is not a token of the LLM "
                f"tokenizer at {llm_path}; leave it unset (the decoder's end token is used)"
            )
    try:
        frame = text_frame(
            tokenizer,
            llm_path,
            decoder_conf.get("prompt") or "",
            decoder_conf.get("prompt_suffix") or "",
            decoder_conf.get("text_start"),
            decoder_conf.get("text_end"),
            decoder_conf.get("chat_template"),
        )
        resolve_text_form(decoder_conf.get("text_form"), llm_path, "decoder_conf.text_form")
    except ValueError as e:
        # the decoder_conf keys the message names decide which file to blame
        named = [k for k in ("text_start", "text_end", "chat_template", "text_form") if k in str(e)]
        raise ConfigError(f"{source('decoder_conf', *(named or ['llm_path']))}: {e}") from e
    end = tokenizer.convert_ids_to_tokens(frame.end_id)
    for key, value in symbols.items():
        if vocab[value] != frame.end_id:
            raise ConfigError(
                f"{source('model_conf', key)}: model_conf.{key}: {value!r} is not the LLM decoder's "
                f"end token {end!r} (decoder_conf.text_end / chat_template, or llm_usage.json beside "
                f"{llm_path}): beam search would not stop where the text ends; leave it unset"
            )
