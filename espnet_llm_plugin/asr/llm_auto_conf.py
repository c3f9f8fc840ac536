"""Config values that an LLM decoder fixes, read from ``decoder_conf.llm_path``.

With ``decoder: llm`` or ``llm_xattn`` the adapter's output width
(``postencoder_conf.output_size`` of ``conv1d_mlp_adapter``) is a property of the LLM, not a
choice: its input embedding width (576 for SmolLM2-135M, 4096 for a 7B Llama). Left out or
set to ``auto``, :func:`fill_llm_dependent_conf` reads it from the LLM directory, so one YAML
serves any Hugging Face causal LM. An explicit value is kept as written (a wrong width still
fails in ``LlmDecoder`` with a message naming the right one). ``LlmASRTask.build_model`` fills
``args`` in place before ESPnet builds the parts; ESPnet writes ``config.yaml`` after
building, so the experiment's config records the number and decoding rebuilds the same model.
(``model_conf.sym_sos``/``sym_eos`` are the LLM decoder's end token when unset: see
``LlmASRModel``.)
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Dict, Optional

from espnet_llm_plugin.core.hf_causal_lm import llm_input_width
from espnet_llm_plugin.core.llm_usage import read_llm_usage

logger = logging.getLogger(__name__)

AUTO = "auto"
LLM_DECODERS = ("llm", "llm_xattn")
# postencoders whose output goes straight into the LLM and whose width is ``output_size``
WIDTH_POSTENCODERS = ("conv1d_mlp_adapter",)


def is_auto(conf: Dict[str, Any], key: str) -> bool:
    """``conf[key]`` is absent, None or ``"auto"``."""
    value = conf.get(key)
    return value is None or (isinstance(value, str) and value.strip().lower() == AUTO)


def _name(args: argparse.Namespace, part: str) -> str:
    return str(getattr(args, part, None) or "").lower()


def fill_llm_dependent_conf(args: argparse.Namespace) -> Dict[str, Any]:
    """Fill the LLM-dependent values of an ESPnet ASR config in place (see the module docstring).

    Args:
        args: ESPnet's parsed task arguments (``decoder``, ``decoder_conf``, ``postencoder``,
            ``postencoder_conf``), or those read back from ``config.yaml``.

    Returns:
        ``{"postencoder_conf.output_size": 576}``: what was filled (empty when nothing).

    Raises:
        ValueError: ``auto`` where no LLM can answer (not an LLM decoder, or no
            ``decoder_conf.llm_path``), naming the key.
        LlmLoadError: ``decoder_conf.llm_path`` is not a loadable model directory.
    """

    filled = record_usage_defaults(args)
    post_conf = dict(getattr(args, "postencoder_conf", None) or {})
    decoder_conf = getattr(args, "decoder_conf", None) or {}
    if _name(args, "postencoder") not in WIDTH_POSTENCODERS or not is_auto(post_conf, "output_size"):
        return filled
    llm_path: Optional[str] = decoder_conf.get("llm_path") or None
    if _name(args, "decoder") not in LLM_DECODERS or not llm_path:
        if "output_size" not in post_conf:
            return filled  # left out: the adapter's own default, as before
        why = (
            f"decoder '{getattr(args, 'decoder', None)}' has no LLM (only {', '.join(LLM_DECODERS)})"
            if _name(args, "decoder") not in LLM_DECODERS
            else "decoder_conf.llm_path is not set"
        )
        raise ValueError(f"postencoder_conf.output_size: '{AUTO}' is read from the LLM, but {why}; give a number")
    post_conf["output_size"] = llm_input_width(llm_path)
    args.postencoder_conf = post_conf
    logger.info(
        "postencoder_conf.output_size: %d (the input width of the LLM at %s)", post_conf["output_size"], llm_path
    )
    return {**filled, "postencoder_conf.output_size": post_conf["output_size"]}


def record_usage_defaults(args: argparse.Namespace) -> Dict[str, Any]:
    """Copy the LLM's ``llm_usage.json`` defaults (chat template / text framing, text form)
    into ``decoder_conf`` where the config leaves them unset, so ``config.yaml`` records the
    frame the model was trained with: a later edit of the usage file cannot change how a
    trained model reads its input. Config values win; a text form's keys are merged.

    Returns:
        What was filled, e.g. ``{"decoder_conf.chat_template": True, ...}``.
    """

    decoder_conf = dict(getattr(args, "decoder_conf", None) or {})
    llm_path = decoder_conf.get("llm_path")
    if _name(args, "decoder") not in LLM_DECODERS or not llm_path:
        return {}
    usage = read_llm_usage(llm_path)
    filled: Dict[str, Any] = {}
    chat = decoder_conf.get("chat_template")
    if (
        chat is None
        and "chat_template" in (usage.get("llm_asr") or {})
        and not (decoder_conf.get("text_start") or decoder_conf.get("text_end"))
    ):
        chat = filled["decoder_conf.chat_template"] = bool(usage["llm_asr"]["chat_template"])
    framing = usage.get("framing") or {}
    if not chat and decoder_conf.get("text_start") is None and decoder_conf.get("text_end") is None:
        for key, usage_key in (("text_start", "start"), ("text_end", "end")):
            if usage_key in framing:
                filled[f"decoder_conf.{key}"] = list(framing[usage_key])
    if usage.get("text_form"):
        merged = {**usage["text_form"], **(decoder_conf.get("text_form") or {})}
        if merged != decoder_conf.get("text_form"):
            filled["decoder_conf.text_form"] = merged
    for key, value in filled.items():
        decoder_conf[key.split(".", 1)[1]] = value
    if filled:
        args.decoder_conf = decoder_conf
        logger.info("recorded the defaults of %s/llm_usage.json in decoder_conf: %s", llm_path, filled)
    return filled
