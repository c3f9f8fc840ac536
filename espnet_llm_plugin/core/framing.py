"""Prompt framing: which tokens come before and after the text an LLM reads or writes.

A text was framed ``[bos] text [eos]`` everywhere. For an Instruct model that is a poor fit:
SmolLM2-135M-Instruct's eos is ``<|im_end|>`` (end of a chat turn), which costs about 15 nats
after a plain sentence, against about 2 for ``<|endoftext|>``. The framing is therefore a
per-model choice, measured (``python -m espnet_llm_plugin.bin.lm_framing_sweep``) and stored in
``llm_usage.json``; without one the legacy ``[bos] text [eos]`` framing stays.

Token strings are vocabulary entries (e.g. ``"<|endoftext|>"``, ``"."``); the aliases
``"<bos>"`` and ``"<eos>"`` mean the tokenizer's own bos/eos token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from espnet_llm_plugin.core.llm_usage import llm_usage_path, usage_section

BOS_ALIAS = "<bos>"
EOS_ALIAS = "<eos>"


def token_id(tokenizer, token: str, where: str) -> int:
    """The id of ``token``, a single entry of the tokenizer's vocabulary (added tokens
    included). Raises ``ValueError`` naming the token and ``where`` otherwise: ``convert_tokens_to_ids``
    would silently answer the unknown-token id (SmolLM2: ``<|endoftext|>``)."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise ValueError(
            f"{where}: token {token!r} is not in the vocabulary of the LLM's tokenizer "
            f"({type(tokenizer).__name__}, {len(vocab)} entries); use a single vocabulary "
            f"entry or the aliases {BOS_ALIAS!r} / {EOS_ALIAS!r}"
        )
    return int(vocab[token])


def _as_tokens(value: Any, key: str, where: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise ValueError(f"{where}: framing.{key} must be a list of token strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class LmFraming:
    """Token strings before (``start``) and after (``end``) a text.

    ``where`` (config key / file) only names the source in error messages.
    """

    start: Tuple[str, ...] = (BOS_ALIAS,)
    end: Tuple[str, ...] = (EOS_ALIAS,)
    where: str = field(default="framing", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_tokens(self.start, "start", self.where))
        object.__setattr__(self, "end", _as_tokens(self.end, "end", self.where))

    def _ids(self, tokenizer, tokens: Sequence[str], key: str) -> List[int]:
        ids = []
        for tok in tokens:
            if tok == BOS_ALIAS:
                # A tokenizer without bos (e.g. Qwen) simply starts with the text.
                if tokenizer.bos_token_id is not None:
                    ids.append(int(tokenizer.bos_token_id))
            elif tok == EOS_ALIAS:
                if tokenizer.eos_token_id is None:
                    raise ValueError(
                        f"{self.where}: framing.{key} uses {EOS_ALIAS!r} but the LLM's tokenizer "
                        "has no eos token; name the end token explicitly"
                    )
                ids.append(int(tokenizer.eos_token_id))
            else:
                ids.append(token_id(tokenizer, tok, f"{self.where}: framing.{key}"))
        return ids

    def start_ids(self, tokenizer) -> List[int]:
        """Ids put before the text (may be empty)."""
        return self._ids(tokenizer, self.start, "start")

    def end_ids(self, tokenizer) -> List[int]:
        """Ids that end the text (may be empty for a scorer; LLM-ASR needs at least one)."""
        return self._ids(tokenizer, self.end, "end")

    def encode(self, tokenizer, text: str) -> List[int]:
        """``start + text + end`` ids; the text is tokenised without special tokens."""
        body = tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.start_ids(tokenizer) + list(body) + self.end_ids(tokenizer)

    def to_dict(self) -> Dict[str, List[str]]:
        return {"start": list(self.start), "end": list(self.end)}

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]], where: str) -> "LmFraming":
        """Build from a config mapping; missing keys keep the legacy default, unknown keys
        are errors naming ``where``."""
        if d is None:
            return cls(where=where)
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: framing must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {"start", "end"})
        if unknown:
            raise ValueError(f"{where}: unknown framing key(s) {unknown}; known: ['end', 'start']")
        kwargs = {k: _as_tokens(d[k], k, where) for k in ("start", "end") if k in d}
        return cls(**kwargs, where=where)


LEGACY_FRAMING = LmFraming(start=(BOS_ALIAS,), end=(EOS_ALIAS,), where="legacy framing")


def resolve_framing(
    value: Optional[Mapping[str, Any]],
    llm_dir: Optional[Union[str, Path]],
    where: str,
) -> LmFraming:
    """The framing a component uses: the explicit ``value``, else ``llm_usage.json``'s
    ``framing`` beside the LLM, else the legacy ``[bos] text [eos]`` (so models without a
    usage file, like the tiny test models, behave as before).

    An explicit value naming only ``start`` or ``end`` takes the other from the usage file.
    """

    merged: Dict[str, Any] = {}
    base = usage_section(llm_dir, "framing")
    source = where
    if base is not None:
        merged.update(LmFraming.from_dict(base, f"{llm_usage_path(llm_dir)}: framing").to_dict())
        source = f"{where} (defaults from {llm_usage_path(llm_dir)})"
    if value is not None:
        LmFraming.from_dict(value, where)  # validates, naming ``where``
        merged.update(value)
    return LmFraming.from_dict(merged, source)


# A string no prompt contains: the chat template is rendered around it and split there.
_SPEECH_PLACEHOLDER = "\u2063SPEECH\u2063"


@dataclass(frozen=True)
class ChatFrame:
    """A user turn holding the speech, rendered with the tokenizer's own chat template.

    ``[prefix_ids][speech][suffix_ids]`` then the assistant's text, ended by ``end_id``
    (the template's end-of-turn token). ``suffix_ids`` ends with the assistant header.
    """

    prefix_ids: Tuple[int, ...]
    suffix_ids: Tuple[int, ...]
    end_id: int


def chat_frame(tokenizer, before: str, after: str, where: str) -> ChatFrame:
    """Render ``before + <speech> + after`` as a user turn (with the generation prompt) and
    split it at the speech; find the end-of-turn token from a rendered assistant turn.

    Raises ``ValueError`` naming ``where`` when the tokenizer has no chat template or the
    template drops the user content or ends the assistant turn with no token.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{where}: chat_template is set but the LLM's tokenizer has no chat template")
    user = {"role": "user", "content": f"{before}{_SPEECH_PLACEHOLDER}{after}"}
    rendered = _render_chat(tokenizer, [user], True, where)
    if rendered.count(_SPEECH_PLACEHOLDER) != 1:
        raise ValueError(f"{where}: the tokenizer's chat template does not render the user content once")
    head, tail = rendered.split(_SPEECH_PLACEHOLDER)
    marker = "\u2063ANSWER\u2063"
    turn = _render_chat(tokenizer, [user, {"role": "assistant", "content": marker}], False, where)
    after_answer = turn.split(marker, 1)[1] if marker in turn else ""
    end_ids = tokenizer(after_answer, add_special_tokens=False)["input_ids"] if after_answer else []
    if not end_ids:
        raise ValueError(f"{where}: the tokenizer's chat template puts no token after an assistant turn")

    def ids(text: str) -> Tuple[int, ...]:
        return tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()

    return ChatFrame(prefix_ids=ids(head), suffix_ids=ids(tail), end_id=int(end_ids[0]))


def _render_chat(tokenizer: Any, messages: List[Dict[str, str]], generation_prompt: bool, where: str) -> str:
    """The tokenizer's chat template applied to ``messages`` (text); a broken template is a
    ``ValueError`` naming ``where``, not a raw jinja2 traceback."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    except TemplateError as e:
        raise ValueError(f"{where}: the LLM's chat template fails to render: {e}") from e
