"""A decoder-only Hugging Face LLM as ESPnet's ASR decoder (arXiv 2406.17272).

The LLM reads, per utterance::

    [prompt][speech frames (adapter outputs)][prompt_suffix][t0 t1 ... tn]

and its logits at the text positions are returned, so ESPnet's attention loss and its beam
search use the LLM unchanged.

Token ids: ESPnet's token list must be the LLM tokenizer's vocabulary in id order
(``token_type: hugging_face``, ``bpemodel: <llm_path>``), so ESPnet ids are LLM ids.

Framing: the text is ``[start] t1 ... tn [end]``. ``end`` is one token, the one beam search
stops on, so ESPnet's sos/eos must be its id: ``model: llm_asr`` sets ``sym_sos``/``sym_eos`` to
it when they are not given (see :class:`~espnet_llm_plugin.asr.llm_asr_model.LlmASRModel`),
and targets end with it. ESPnet's sos opens every text (``[sos, y1..]``); we feed the last
``start`` token in its place (the others go after ``prompt_suffix``). With no start token the
sos (= end) id stays: the text starts after a document boundary. ``text_start``/``text_end``
default to the LLM's ``llm_usage.json`` (measured per model), else the legacy ``[bos] text
[eos]``. With ``chat_template: true`` the prompt and speech form a user turn of the
tokenizer's own chat template (rendered around a placeholder for the speech, split there)::

    [template head + prompt][speech][prompt_suffix + end of turn + assistant header] text [end of turn]

Text form: ``text_form`` (default: ``llm_usage.json``, else as is) is what the LLM reads and
writes (e.g. sentence case); the task's preprocessor maps recipe transcripts to it before
tokenising, decoding maps the output back (:mod:`espnet_llm_plugin.core.text_form`).

Layout of a batch (``forward``): the speech part is packed per utterance and padded *between*
the prefix and the text, so that every utterance's text starts at the same column::

    row 0: [p p p][s s s s][x x][t0 t1 t2]      (x = prompt_suffix, . = padding)
    row 1: [p p p][s s][x x][. .][t0 t1 .]

The attention mask hides the padding and position ids count valid tokens only, so each
utterance is computed exactly as if alone, and the text logits are the last ``L`` columns
(``logits_to_keep=L``: no ``(B, T, V)`` logits for speech frames). Padding never precedes all
valid tokens of a row, so no attention row is fully masked (no NaNs in SDPA).

Beam search state (``batch_score``): one KV cache per call, shared by the hypotheses it scored;
a hypothesis state is ``(weak reference to that cache, row, number of tokens in it)``.
``init_state`` runs ``[prompt][speech][suffix]`` once per utterance; each later call selects the
needed rows of the parent cache (ESPnet's beam reordering) and feeds only the new token(s).
The decoder keeps strong references only to the caches of the latest step, so the caches of
finished hypotheses (which ESPnet keeps with their states) are freed; a state whose cache is
gone is recomputed from the speech and its tokens (correct, just slower).

Streaming simulation (ESPnet's ``--streaming true``, ``BatchBeamSearchOnlineSim``): the search
starts on the first block of speech and is handed more blocks as it goes; :meth:`LlmDecoder.extend_prob`
drops the caches then, so the hypotheses are rescored over all speech received so far. The
beam search is handed adapter outputs, so ESPnet's ``encoder_conf.block_size``/``hop_size``/
``look_ahead`` count adapter frames there (the encoder itself still sees the whole utterance).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from transformers import AutoTokenizer
from transformers.cache_utils import DynamicLayer

from espnet_llm_plugin.core.base_weights import track_frozen_base
from espnet_llm_plugin.core.beam_kv_cache import CacheState, LiveCaches, select_cache_rows
from espnet_llm_plugin.core.finetune import (
    SCHEMES,
    LoraOptions,
    apply_finetune,
    enable_gradient_checkpointing,
)
from espnet_llm_plugin.core.framing import chat_frame, resolve_framing
from espnet_llm_plugin.core.hf_causal_lm import (
    DTYPES,
    cache_kwarg,
    check_llm_dir,
    cpu_supports_bfloat16,
    input_embedding,
    load_causal_lm,
    max_positions,
    output_cache,
    unwrap_peft,
)
from espnet_llm_plugin.core.llm_usage import usage_section
from espnet_llm_plugin.core.text_form import resolve_text_form

logger = logging.getLogger(__name__)


LlmScorerState = CacheState  # the name this module has always exported


@dataclass(frozen=True)
class TextFrame:
    """Token ids around the speech and the text (see the module docstring).

    ``prompt_ids`` go before the speech, ``suffix_ids`` after it; ``lead_id`` is fed in place
    of ESPnet's sos (None: the sos id itself); ``end_id`` ends the text (ESPnet's sos/eos).
    """

    prompt_ids: Tuple[int, ...]
    suffix_ids: Tuple[int, ...]
    lead_id: Optional[int]
    end_id: int


def text_frame(
    tokenizer: Any,
    llm_path: str,
    prompt: str = "",
    prompt_suffix: str = "",
    text_start: Optional[List[str]] = None,
    text_end: Optional[List[str]] = None,
    chat_template: Optional[bool] = None,
) -> TextFrame:
    """The frame the decoder options (same names as ``decoder_conf``) give with ``tokenizer``.

    Defaults come from ``llm_usage.json`` beside the LLM (``framing``, ``llm_asr.chat_template``),
    else the legacy ``[bos] text [eos]``. Errors name the ``decoder_conf`` key.
    """
    where = "LlmDecoder: decoder_conf"
    usage = usage_section(llm_path, "llm_asr") or {}
    if chat_template is None:
        # an explicit text frame overrides the usage file's chat default
        explicit_frame = text_start is not None or text_end is not None
        chat_template = False if explicit_frame else bool(usage.get("chat_template", False))
    if chat_template:
        if text_start is not None or text_end is not None:
            raise ValueError(
                f"{where}.chat_template is true: the chat template frames the text; drop "
                "decoder_conf.text_start/text_end (or set chat_template: false)"
            )
        chat = chat_frame(tokenizer, prompt, prompt_suffix, f"{where}.chat_template")
        after = chat.suffix_ids  # ends with the assistant header
        if not after:
            raise ValueError(f"{where}.chat_template: the template puts no token after the user turn")
        return TextFrame(chat.prefix_ids, after[:-1], after[-1], chat.end_id)
    explicit = {k: v for k, v in (("start", text_start), ("end", text_end)) if v is not None}
    framing = resolve_framing(explicit or None, llm_path, f"{where}.text_start/text_end")
    end = framing.end_ids(tokenizer)
    if len(end) != 1:
        raise ValueError(
            f"{where}.text_end must be exactly one token (ESPnet's beam search stops on one eos "
            f"id), got {list(framing.end)} ({framing.where}); a period before it belongs to "
            "decoder_conf.text_form: {punctuation: final_period}"
        )
    start = framing.start_ids(tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids if prompt else []
    after = tokenizer(prompt_suffix, add_special_tokens=False).input_ids if prompt_suffix else []
    return TextFrame(tuple(prompt_ids), tuple(after) + tuple(start[:-1]), start[-1] if start else None, end[0])


def decoder_end_token(decoder_conf: Dict[str, Any]) -> str:
    """The token string ending the text for these ``decoder_conf`` options (``llm_path``
    required): what ESPnet's ``model_conf.sym_sos``/``sym_eos`` must be."""
    llm_path = str(decoder_conf["llm_path"])
    tokenizer = AutoTokenizer.from_pretrained(str(check_llm_dir(llm_path)), local_files_only=True)
    frame = text_frame(
        tokenizer,
        llm_path,
        decoder_conf.get("prompt", "") or "",
        decoder_conf.get("prompt_suffix", "") or "",
        decoder_conf.get("text_start"),
        decoder_conf.get("text_end"),
        decoder_conf.get("chat_template"),
    )
    return str(tokenizer.convert_ids_to_tokens(frame.end_id))


class LlmDecoder(AbsDecoder, BatchScorerInterface):
    """Decoder-only Hugging Face causal LM reading adapter outputs (registered as ``llm``).

    Args:
        vocab_size: ESPnet token list size; must equal ``len(tokenizer)``.
        encoder_output_size: width of the (post)encoder output; must equal the LLM hidden size.
        llm_path: local directory with the HF model and its tokenizer (``save_pretrained``).
        prompt: text placed before the speech (tokenized without special tokens).
        prompt_suffix: text placed between the speech and the transcript.
        finetune: ``frozen`` | ``lora`` | ``full`` for the LLM.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA options (``lora`` only);
            ``lora_target_modules=None`` adapts every ``nn.Linear`` except ``lm_head``.
        dtype: ``float32`` | ``bfloat16`` | ``float16`` (half types need CUDA, see
            :func:`espnet_llm_plugin.core.hf_causal_lm.resolve_dtype`).
        max_context: longest input (prompt + speech + suffix + text) in tokens; defaults to the
            LLM's ``max_position_embeddings``.
        gradient_checkpointing: recompute the LLM layers' activations in backward instead of
            keeping them (Hugging Face's switch, non-reentrant). The adapter is trained, so
            gradients flow through the whole LLM under every ``finetune`` scheme and activations,
            not weights, dominate training memory; this trades about one more LLM forward pass
            per step for them. Acts in training mode only: evaluation and beam search (KV cache,
            ``torch.no_grad``) are unchanged. See
            :func:`espnet_llm_plugin.core.finetune.enable_gradient_checkpointing`.
        text_start: token strings before the text (``"<bos>"``/``"<eos>"``: the tokenizer's
            own); default from ``llm_usage.json`` beside the LLM, else ``["<bos>"]``.
        text_end: the one token ending the text (ESPnet's sos/eos); default likewise, else
            ``["<eos>"]``.
        chat_template: wrap prompt + speech as a user turn of the tokenizer's chat template;
            the end token is then the template's end of turn. Default: ``llm_usage.json``'s
            ``llm_asr.chat_template``, else false.
        autocast: ``bfloat16`` | ``float16`` | None: run the LLM under ``torch.autocast`` (matmuls
            in the half type, weights and their gradients stay in the model's dtype). ESPnet casts
            the whole model to ``--train_dtype`` (float32) after building it, so this, not
            ``dtype``, is how the LLM computes in bf16 during training; on a CPU with AMX/AVX512-BF16
            it is several times faster than float32. Refused on a CPU without bf16 support.
        text_form: what the LLM reads and writes (:class:`~espnet_llm_plugin.core.text_form.TextForm`
            keys ``case``, ``punctuation``, ``recipe_case``) laid over ``llm_usage.json``'s.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        llm_path: str = "",
        prompt: str = "",
        prompt_suffix: str = "",
        finetune: str = "lora",
        lora_r: int = 16,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: Optional[List[str]] = None,
        dtype: str = "float32",
        max_context: Optional[int] = None,
        gradient_checkpointing: bool = False,
        text_start: Optional[List[str]] = None,
        text_end: Optional[List[str]] = None,
        chat_template: Optional[bool] = None,
        text_form: Optional[Dict[str, str]] = None,
        autocast: Optional[str] = None,
    ):
        super().__init__()
        if not llm_path:
            raise ValueError("LlmDecoder: decoder_conf.llm_path is required (a local HF model dir)")
        if finetune not in SCHEMES:
            raise ValueError(f"LlmDecoder: decoder_conf.finetune must be one of {SCHEMES}, got {finetune!r}")
        try:
            model, tokenizer = load_causal_lm(llm_path, dtype=dtype)
        except ValueError as e:
            raise ValueError(f"LlmDecoder: decoder_conf.llm_path: {e}") from e

        _, hidden = input_embedding(model)
        if encoder_output_size != hidden:
            raise ValueError(
                f"LlmDecoder: encoder_output_size {encoder_output_size} != hidden size {hidden} of "
                f"the LLM at {llm_path}; set postencoder_conf.output_size to {hidden}"
            )
        if vocab_size != len(tokenizer):
            raise ValueError(
                f"LlmDecoder: vocab_size {vocab_size} (the ESPnet token list) != {len(tokenizer)} "
                f"tokens of the tokenizer at {llm_path}: token_list is not this LLM's vocabulary "
                f"(use token_type hugging_face with bpemodel {llm_path})"
            )
        lm_vocab = int(model.config.get_text_config(decoder=True).vocab_size)
        if lm_vocab < vocab_size:
            raise ValueError(
                f"LlmDecoder: the LLM at {llm_path} has {lm_vocab} output logits but its tokenizer "
                f"{vocab_size} tokens (added tokens without resize_token_embeddings?)"
            )
        if tokenizer.eos_token_id is None:
            raise ValueError(f"LlmDecoder: the tokenizer at {llm_path} has no eos token")

        self.llm_path = str(llm_path)
        self.vocab_size = vocab_size
        self.hidden_size = hidden
        self.tokenizer = tokenizer
        self.eos_id: int = int(tokenizer.eos_token_id)
        self.bos_id: Optional[int] = None if tokenizer.bos_token_id is None else int(tokenizer.bos_token_id)
        self.pad_id: int = self.eos_id if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)
        self._dtype_arg = dtype

        frame = text_frame(tokenizer, llm_path, prompt, prompt_suffix, text_start, text_end, chat_template)
        prompt_ids, suffix_ids = list(frame.prompt_ids), list(frame.suffix_ids)
        self.end_id: int = frame.end_id
        # the token fed in place of ESPnet's sos (None: the sos id itself, a document boundary)
        self.text_lead_id: Optional[int] = frame.lead_id
        self.text_form = resolve_text_form(text_form, llm_path, "LlmDecoder: decoder_conf.text_form")
        # not persistent: rebuilt from the config, so a changed prompt is not silently overridden
        self.register_buffer("prompt_ids", torch.tensor(prompt_ids, dtype=torch.long), persistent=False)
        self.register_buffer("suffix_ids", torch.tensor(suffix_ids, dtype=torch.long), persistent=False)

        self.max_context = max_context if max_context is not None else max_positions(model)
        n_prompt = len(prompt_ids) + len(suffix_ids)
        # room for at least one speech frame and one text token
        if self.max_context is not None and n_prompt + 2 > self.max_context:
            raise ValueError(
                f"LlmDecoder: decoder_conf.prompt + prompt_suffix is {n_prompt} tokens, too long for "
                f"the LLM context of {self.max_context} tokens (decoder_conf.max_context)"
            )

        if autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"LlmDecoder: decoder_conf.autocast must be bfloat16, float16 or null, got {autocast!r}")
        self.autocast = autocast

        self.finetune = finetune
        lora = LoraOptions(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=lora_target_modules)
        self.llm = apply_finetune(model, finetune, lora, name="LlmDecoder (decoder_conf)")
        self.gradient_checkpointing = bool(gradient_checkpointing)
        if self.gradient_checkpointing:
            enable_gradient_checkpointing(
                self.llm, name="LlmDecoder (decoder_conf)", checkpoint_kwargs=self._checkpoint_kwargs()
            )

        forward_params = inspect.signature(unwrap_peft(self.llm).forward).parameters
        self._cache_kw = cache_kwarg(self.llm)
        self._has_logits_to_keep = "logits_to_keep" in forward_params
        # step -> KV caches that running hypotheses may still need (see module docstring)
        self._live_caches = LiveCaches()
        # streaming simulation: speech frames the caches were computed over (see extend_prob)
        self._speech_frames: Optional[int] = None
        self._speech_changed = False
        # checkpoints keep the trained parameters + a reference to the frozen base LLM
        track_frozen_base(self, self.llm, self.llm_path, where="decoder_conf.llm_path")

    # ------------------------------------------------------------------ helpers
    def _checkpoint_kwargs(self) -> Dict[str, Any]:
        """Extra ``torch.utils.checkpoint`` arguments for gradient checkpointing (none here)."""
        return {}

    def _causal_lm(self) -> torch.nn.Module:
        # LoRA layers are injected in place, so calling the unwrapped model uses them
        return unwrap_peft(self.llm)

    def _embed(self) -> torch.nn.Module:
        return input_embedding(self.llm)[0]

    def text_embedding(self) -> torch.nn.Module:
        """The LLM's input token embedding (``(B, L) -> (B, L, D)``), e.g. for a matching loss."""
        return self._embed()

    def _autocast(self, device: torch.device) -> Any:
        """``torch.autocast`` context for ``decoder_conf.autocast`` on ``device`` (or a no-op)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        dtype = DTYPES[self.autocast]
        if device.type == "cpu" and (dtype != torch.bfloat16 or not cpu_supports_bfloat16()):
            # e.g. a model trained on a GPU, decoded on a CPU: run in float32 as resolve_dtype does
            if not getattr(self, "_warned_autocast", False):
                logger.warning(
                    "LlmDecoder: decoder_conf.autocast %s is not supported on this CPU (bfloat16 "
                    "needs AMX or AVX512-BF16); the LLM runs in float32",
                    self.autocast,
                )
                self._warned_autocast = True
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _run_llm(self, inputs_embeds: torch.Tensor, keep: int, **kwargs: Any) -> Any:
        """Run the causal LM; returns ``(logits of the last keep positions, model output)``.

        Logits come back in float32 also under ``autocast`` (log-softmax and the loss need it).
        """
        with self._autocast(inputs_embeds.device):
            if self._has_logits_to_keep:
                out = self._causal_lm()(inputs_embeds=inputs_embeds, logits_to_keep=keep, **kwargs)
            else:
                out = self._causal_lm()(inputs_embeds=inputs_embeds, **kwargs)
        return out.logits[:, -keep:].float(), out

    def _text_ids(self, ys: torch.Tensor) -> torch.Tensor:
        """ESPnet token ids ``(B, L)`` -> LLM input ids: ESPnet padding (-1) -> pad, a leading
        sos (= the end token) -> the framing's last start token."""
        ys = ys.masked_fill(ys < 0, self.pad_id)
        if self.text_lead_id is not None and ys.size(1) > 0:
            first = ys[:, :1]
            ys = torch.cat([first.masked_fill(first == self.end_id, self.text_lead_id), ys[:, 1:]], dim=1)
        return ys

    def _speech_prefix(self, hs: torch.Tensor, hlens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Build ``[prompt][hs[:hlen]][suffix]`` per utterance, padded at the end.

        Args:
            hs: ``(B, T, D)`` adapter outputs.
            hlens: ``(B,)`` valid frames.

        Returns:
            ``(B, Tp, D)`` embeddings, ``(B, Tp)`` bool mask of valid positions, ``(B,)`` lengths.
        """
        embed = self._embed()
        B, D = hs.size(0), hs.size(2)
        hlens = hlens.to(device=hs.device, dtype=torch.long)
        hmax = int(hlens.max())
        dtype = embed.weight.dtype if hasattr(embed, "weight") else hs.dtype
        P, S = self.prompt_ids.numel(), self.suffix_ids.numel()
        if P + S == 0 and bool((hlens <= 0).any()):
            # the row would start with padding: a fully masked attention row gives NaNs in SDPA
            raise ValueError(
                "LlmDecoder: an utterance has 0 speech frames after the adapter and there is no "
                "decoder_conf.prompt; drop utterances that short or set a prompt"
            )
        src = torch.cat(
            [
                embed(self.prompt_ids).to(dtype).unsqueeze(0).expand(B, P, D),
                hs[:, :hmax].to(dtype),
                embed(self.suffix_ids).to(dtype).unsqueeze(0).expand(B, S, D),
            ],
            dim=1,
        )  # (B, P + hmax + S, D)
        # move each row's suffix right behind its own speech frames; padding goes after it
        t = torch.arange(src.size(1), device=hs.device).unsqueeze(0)  # (1, Tp)
        end_speech = P + hlens.unsqueeze(1)  # (B, 1)
        index = torch.where(t < end_speech, t, torch.where(t < end_speech + S, t + hmax - hlens.unsqueeze(1), t))
        out = src.gather(1, index.unsqueeze(-1).expand(B, src.size(1), D))
        mask = t < end_speech + S
        return out, mask, P + hlens + S

    def _check_context(self, total: int, what: str) -> None:
        if self.max_context is not None and total > self.max_context:
            raise ValueError(
                f"LlmDecoder: {what} needs {total} positions, more than the LLM context of "
                f"{self.max_context} (decoder_conf.max_context); shorten the utterance/prompt or "
                f"lower the decoding maxlenratio"
            )

    # ------------------------------------------------------------------ training
    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits at the text positions.

        Args:
            hs_pad: ``(B, T, D)`` adapter outputs (``D`` = LLM hidden size).
            hlens: ``(B,)`` valid frames.
            ys_in_pad: ``(B, L)`` ``[sos, y1..yn]`` padded (ESPnet's ``add_sos_eos``).
            ys_in_lens: ``(B,)`` valid tokens.

        Returns:
            ``(B, L, vocab_size)`` float32 logits (position ``j`` predicts ``y_{j+1}``) and
            ``ys_in_lens``.
        """
        B, L = ys_in_pad.shape
        prefix, prefix_mask, prefix_lens = self._speech_prefix(hs_pad, hlens)
        ys_in_lens = ys_in_lens.to(ys_in_pad.device)
        self._check_context(int((prefix_lens + ys_in_lens.to(prefix_lens.device)).max()), "a training utterance")
        text = self._embed()(self._text_ids(ys_in_pad)).to(prefix.dtype)  # (B, L, D)
        text_mask = torch.arange(L, device=ys_in_pad.device).unsqueeze(0) < ys_in_lens.unsqueeze(1)
        inputs = torch.cat([prefix, text], dim=1)
        mask = torch.cat([prefix_mask, text_mask.to(prefix_mask.device)], dim=1)
        # positions count valid tokens only: padded rows see the same positions as alone
        position_ids = (mask.long().cumsum(1) - 1).clamp(min=0)
        logits, _ = self._run_llm(inputs, L, attention_mask=mask.long(), position_ids=position_ids, use_cache=False)
        return logits[..., : self.vocab_size].float(), ys_in_lens

    def reload_pretrained_parameters(self) -> None:
        """Restore the pretrained LLM weights after ESPnet's ``init:`` re-initialised them.

        ESPnet's ``initialize`` (any ``init`` other than ``chainer``) calls this on the decoder.
        Base weights are re-read from ``llm_path``; LoRA adapters are re-initialised as peft
        does (A: kaiming uniform, B: zeros) so training starts from the pretrained LLM.
        """
        fresh, _ = load_causal_lm(self.llm_path, dtype=self._dtype_arg)
        target = self._causal_lm()
        with torch.no_grad():
            for name, param in fresh.named_parameters():
                module_name, _, param_name = name.rpartition(".")
                try:
                    module = target.get_submodule(module_name)
                except AttributeError as e:
                    raise RuntimeError(
                        f"LlmDecoder.reload_pretrained_parameters: {name} of {self.llm_path} has no "
                        f"counterpart in the decoder's LLM"
                    ) from e
                module = getattr(module, "base_layer", module)  # peft LoRA wrapper
                getattr(module, param_name).copy_(param)
            for module in target.modules():
                lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
                if isinstance(lora_a, torch.nn.ModuleDict) and isinstance(lora_b, torch.nn.ModuleDict):
                    for key in lora_a:
                        torch.nn.init.kaiming_uniform_(lora_a[key].weight, a=5**0.5)
                        torch.nn.init.zeros_(lora_b[key].weight)
        logger.info("LlmDecoder: pretrained LLM parameters reloaded from %s", self.llm_path)

    # ------------------------------------------------------------------ beam search
    def init_state(self, x: torch.Tensor) -> LlmScorerState:
        """Run ``[prompt][x][suffix]`` once per utterance and cache it.

        Args:
            x: ``(T, D)`` adapter outputs of one utterance.
        """
        self._live_caches.clear()  # a new utterance: earlier caches are not needed
        self._speech_frames, self._speech_changed = x.size(0), False
        with torch.no_grad():
            prefix, _, lens = self._speech_prefix(x.unsqueeze(0), torch.tensor([x.size(0)]))
            self._check_context(int(lens[0]) + 1, "the speech prefix plus one token")
            _, out = self._run_llm(prefix, 1, use_cache=True)
        cache = output_cache(out)
        self._check_cache_type(cache)
        return LlmScorerState(self._live_caches.remember(cache, 0), 0, 0)

    def extend_prob(self, x: torch.Tensor) -> None:
        """More speech arrived (ESPnet's streaming simulation, ``BatchBeamSearchOnlineSim``).

        Args:
            x: ``(T', D)`` all adapter frames received so far (the first block and those after it).

        The speech sits before the text in the LLM's input, so every cached prefix was computed
        over fewer frames: the caches are dropped and :meth:`extend_state` makes the next
        ``batch_score`` recompute each hypothesis over all of ``x`` (then cached again).
        """
        if x.size(0) != self._speech_frames:
            self._speech_frames = x.size(0)
            self._live_caches.clear()
            self._speech_changed = True

    def extend_state(self, states: Any) -> Any:
        """After :meth:`extend_prob` gave more speech: states that recompute (None), else ``states``.

        ``states`` is the list of per-hypothesis states of ESPnet's batched hypotheses.
        """
        if not self._speech_changed:
            return states
        self._speech_changed = False
        if isinstance(states, (list, tuple)):
            return [None] * len(states)
        return None

    def select_state(self, state: Any, i: int, new_id: Optional[int] = None) -> Any:
        """Pick hypothesis ``i``'s state from the list ``batch_score`` returned."""
        if state is None or isinstance(state, LlmScorerState):
            return state
        return state[i]

    def score(
        self, ys: torch.Tensor, state: Optional[LlmScorerState], x: torch.Tensor
    ) -> Tuple[torch.Tensor, LlmScorerState]:
        """Next-token log-probs ``(vocab_size,)`` for one prefix ``ys`` ``(L,)``; ``x``: ``(T, D)``."""
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp[0], states[0]

    def batch_score(
        self, ys: torch.Tensor, states: Sequence[Optional[LlmScorerState]], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[LlmScorerState]]:
        """Next-token log-probs for ``n`` hypotheses, feeding only their new tokens.

        Args:
            ys: ``(n, L)`` prefixes (``ys[:, 0]`` is ESPnet's sos).
            states: per hypothesis, a state from ``init_state`` or an earlier call (or None).
            xs: ``(n, T, D)`` adapter outputs (used only to rebuild a released cache).

        Returns:
            ``(n, vocab_size)`` float32 log-probs and the ``n`` new states.
        """
        n = ys.size(0)
        logp = torch.empty(n, self.vocab_size, dtype=torch.float32, device=ys.device)
        new_states: List[Optional[LlmScorerState]] = [None] * n
        # hypotheses sharing a cache object and a length run together; in ESPnet's
        # BatchBeamSearch that is always one group. None: cache missing -> recompute.
        groups = self._live_caches.group(states)
        with torch.no_grad():
            for (_, n_tokens), (cache, idx) in groups.items():
                # the usual case, one group of all hypotheses in order: no gather/scatter copies
                whole = len(idx) == n and idx == list(range(n))
                index = None if whole else torch.tensor(idx, device=ys.device)
                group_ys = ys if index is None else ys[index]
                if cache is None:
                    group_xs = xs if index is None else xs[index.to(xs.device)]
                    group_logp, new_cache = self._score_uncached(group_ys, group_xs)
                else:
                    rows = [states[i].row for i in idx]
                    group_logp, new_cache = self._score_cached(group_ys, n_tokens, cache, rows)
                if index is None:
                    logp = group_logp
                else:
                    logp[index] = group_logp
                ref = self._live_caches.remember(new_cache, ys.size(1))
                for row, i in enumerate(idx):
                    new_states[i] = LlmScorerState(ref, row, ys.size(1))
        return logp, new_states  # type: ignore[return-value]

    def _score_cached(self, ys: torch.Tensor, n_tokens: int, cache: Any, rows: List[int]) -> Tuple[torch.Tensor, Any]:
        new = ys[:, n_tokens:]
        if new.size(1) == 0:
            raise ValueError(
                "LlmDecoder.batch_score: the state already holds every token of the prefix; "
                "pass the prefix extended by the new token"
            )
        if n_tokens == 0:
            new = self._text_ids(new)
        self._check_context(cache.get_seq_length() + new.size(1), "decoding")
        cache = select_cache_rows(cache, rows)
        emb = self._embed()(new)
        logits, out = self._run_llm(emb, 1, use_cache=True, **{self._cache_kw: cache})
        return torch.log_softmax(logits[:, -1, : self.vocab_size].float(), dim=-1), output_cache(out)

    def _score_uncached(self, ys: torch.Tensor, xs: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """Score from scratch: ``[prompt][x][suffix][ys]`` in one pass (all frames of ``xs`` valid)."""
        lens = torch.full((xs.size(0),), xs.size(1), dtype=torch.long, device=xs.device)
        prefix, _, plens = self._speech_prefix(xs, lens)
        self._check_context(int(plens[0]) + ys.size(1), "decoding")
        text = self._embed()(self._text_ids(ys)).to(prefix.dtype)
        logits, out = self._run_llm(torch.cat([prefix, text], dim=1), 1, use_cache=True)
        cache = output_cache(out)
        self._check_cache_type(cache)
        return torch.log_softmax(logits[:, -1, : self.vocab_size].float(), dim=-1), cache

    @staticmethod
    def _check_cache_type(cache: Any) -> None:
        for layer in getattr(cache, "layers", []):
            if not isinstance(layer, DynamicLayer):
                raise NotImplementedError(
                    f"LlmDecoder beam search supports attention KV caches (DynamicLayer) only; this "
                    f"LLM uses {type(layer).__name__} layers"
                )

    # ------------------------------------------------------------------ HF generate
    @torch.no_grad()
    def generate(
        self,
        hs: torch.Tensor,
        max_new_tokens: int = 128,
        num_beams: int = 1,
        no_repeat_ngram_size: int = 0,
        length_penalty: float = 1.0,
    ) -> List[int]:
        """Decode one utterance with Hugging Face ``generate`` (for comparison with ESPnet).

        Note HF's ``length_penalty`` divides beam scores by ``length ** length_penalty``; ESPnet's
        ``penalty`` adds a per-token bonus, so equal numbers do not mean equal behaviour.

        Args:
            hs: ``(1, T, D)`` or ``(T, D)`` adapter outputs.

        Returns:
            token ids of the transcript, without the first token and the final eos.
        """
        if hs.dim() == 2:
            hs = hs.unsqueeze(0)
        if hs.size(0) != 1:
            raise ValueError(f"LlmDecoder.generate: one utterance at a time, got batch {hs.size(0)}")
        prefix, _, lens = self._speech_prefix(hs, torch.tensor([hs.size(1)]))
        first = self.text_lead_id if self.text_lead_id is not None else self.end_id
        first_emb = self._embed()(torch.tensor([[first]], device=prefix.device)).to(prefix.dtype)
        inputs = torch.cat([prefix, first_emb], dim=1)
        self._check_context(int(lens[0]) + 1 + max_new_tokens, "generate")
        out = self._causal_lm().generate(
            inputs_embeds=inputs,
            attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device),
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            no_repeat_ngram_size=no_repeat_ngram_size,
            length_penalty=length_penalty,
            do_sample=False,
            eos_token_id=self.end_id,
            pad_token_id=self.pad_id,
        )
        tokens = out[0].tolist()
        if self.end_id in tokens:
            tokens = tokens[: tokens.index(self.end_id)]
        return tokens
