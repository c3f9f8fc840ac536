"""``LlmASRTask``: ESPnet's ASR task with our components registered.

Defined in its own module that registers on import, because ESPnet's multiprocessing DDP
mode spawns workers with ``target=cls.main_worker``: a spawned worker unpickles
``LlmASRTask``, which imports this module, which registers again in that process before
any model is built. ``build_model_from_file`` (decoding) works the same way.

New top-level config keys (e.g. a retriever) go here as extra ``ClassChoices`` appended to
``class_choices_list`` together with a ``build_model`` override that builds them.

Optional data ``context`` (retrieved passages for ``decoder: llm_xattn``): either a ``text``
entry (``utt_id passage ||| passage ...``, written by ``retrieve_passages``), tokenised here
with the LLM tokenizer (``decoder_conf.llm_path``, else ``bpemodel`` with ``token_type
hugging_face``) into ids with passages joined by eos; or a ``text_int`` entry already holding
those ids (``context_ids``), passed through. ESPnet's collate pads it to ``(B, N)`` with -1 and
adds ``context_lengths``.

Optional data ``units`` (decoding only: an utterance's speech units, a ``text_int`` entry of a
units file ``utt_id u1 u2 ...``), the query context of a multi-modal kNN-LM datastore
(``knnlm_units_from_data`` in ``espnet_llm_plugin.bin.asr_inference``); passed through as ids.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from transformers import AutoTokenizer

from espnet_llm_plugin.asr.llm_auto_conf import fill_llm_dependent_conf
from espnet_llm_plugin.core.text_form import TextForm, infer_recipe_case, resolve_text_form
from espnet_llm_plugin.espnet_fixes import apply_espnet_fixes
from espnet_llm_plugin.quiet import quiet_espnet_import
from espnet_llm_plugin.registry import register
from espnet_llm_plugin.retrieval.passage_retrieval import context_token_ids

with quiet_espnet_import():
    from espnet2.tasks.asr import ASRTask

register()
apply_espnet_fixes()

CONTEXT_NAME = "context"
UNITS_NAME = "units"
TEXT_NAME = "text"


class ContextPreprocessor:
    """Run ESPnet's preprocessor, then tokenise a ``context`` text entry with the LLM tokenizer.

    Args:
        base: ESPnet's preprocessor (or None when ``use_preprocessor`` is false).
        tokenizer_path: local HF tokenizer dir (loaded on first use: cheap to pickle to workers).
        text_form: the LLM decoder's text form; the ``text`` transcript is mapped to it
            (e.g. sentence case) before ESPnet's preprocessor tokenises it.
    """

    def __init__(self, base: Optional[Callable], tokenizer_path: Optional[str], text_form: Optional[TextForm] = None):
        self.base = base
        self.tokenizer_path = tokenizer_path
        self.text_form = None if text_form is None or text_form.is_identity else text_form
        self._tokenizer: Any = None

    def _get_tokenizer(self, uid: str) -> Any:
        if self._tokenizer is None:
            if not self.tokenizer_path:
                raise ValueError(
                    f"utterance '{uid}': data '{CONTEXT_NAME}' is text and needs the LLM tokenizer, "
                    f"but neither decoder_conf.llm_path nor a hugging_face bpemodel is set"
                )

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, local_files_only=True)
        return self._tokenizer

    def __call__(self, uid: str, data: Dict[str, Any]) -> Dict[str, np.ndarray]:
        if self.text_form is not None and isinstance(data.get(TEXT_NAME), str):
            data[TEXT_NAME] = self.text_form.to_llm(data[TEXT_NAME])
        if self.base is not None:
            data = self.base(uid, data)
        value = data.get(CONTEXT_NAME)
        if isinstance(value, str):
            ids = context_token_ids(value, self._get_tokenizer(uid))
            data[CONTEXT_NAME] = np.asarray(ids, dtype=np.int64)
        return data


def context_tokenizer_path(args: argparse.Namespace) -> Optional[str]:
    """The LLM tokenizer dir for ``context``: ``decoder_conf.llm_path`` or a hugging_face bpemodel."""
    conf = getattr(args, "decoder_conf", None) or {}
    if conf.get("llm_path"):
        return str(conf["llm_path"])
    if getattr(args, "token_type", None) == "hugging_face" and getattr(args, "bpemodel", None):
        return str(args.bpemodel)
    return None


def llm_text_form(args: argparse.Namespace) -> Optional[TextForm]:
    """The text form of an LLM decoder (``decoder_conf.text_form`` over the LLM's
    ``llm_usage.json``), or None without ``decoder_conf.llm_path``."""
    conf = getattr(args, "decoder_conf", None) or {}
    if not conf.get("llm_path"):
        return None
    return resolve_text_form(conf.get("text_form"), conf["llm_path"], "decoder_conf.text_form")


def recipe_case_options(args: argparse.Namespace) -> List[str]:
    """``--decoder_conf text_form.recipe_case=<case>`` read from the training transcripts, when
    the LLM decoder's text form changes the text and ``recipe_case`` is not given.

    The decoded text must come back in the recipe's case for scoring (the demo corpus is lower
    case, ESPnet recipes upper case); put on the command line, it lands in ``config.yaml`` so
    decoding maps back the same way. Empty when there is nothing to fill.
    """

    form = llm_text_form(args)
    given = (getattr(args, "decoder_conf", None) or {}).get("text_form") or {}
    if form is None or form.is_identity or "recipe_case" in given:
        return []
    for path, name, _ in getattr(args, "train_data_path_and_name_and_type", None) or []:
        if name == TEXT_NAME and Path(path).is_file():
            with open(path, encoding="utf-8") as f:
                case = infer_recipe_case(line.split(maxsplit=1)[1] for line in f if len(line.split(maxsplit=1)) == 2)
            logging.getLogger(__name__).info("decoder_conf.text_form.recipe_case: %s (from %s)", case, path)
            return ["--decoder_conf", f"text_form.recipe_case={case}"]
    return []


class LlmASRTask(ASRTask):
    """ESPnet ``ASRTask`` whose ClassChoices include espnet-llm-plugin components.

    Adds the optional data names ``context`` and, for inference, ``units`` (see the module
    docstring), and fills the config values an LLM decoder fixes (``build_model``).
    """

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> Any:
        # adapter width and sos/eos from the LLM, when left out or "auto"; filled into args,
        # which ESPnet dumps to config.yaml after this, so decoding rebuilds the same model

        fill_llm_dependent_conf(args)
        return super().build_model(args)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        names = tuple(super().optional_data_names(train, inference)) + (CONTEXT_NAME,)
        return names + (UNITS_NAME,) if inference else names

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        base = super().build_preprocess_fn(args, train)
        path = context_tokenizer_path(args)
        if base is None and path is None:
            return None
        return ContextPreprocessor(base, path, llm_text_form(args))
