"""LLM decoder reading retrieved passages through gated cross-attention (arXiv 2406.09618).

``LlmXattnDecoder`` (registered as decoder ``llm_xattn``) is :class:`LlmDecoder` plus
:class:`~espnet_llm_plugin.retrieval.xattn.GatedCrossAttentionBlock` s inserted after every
``xattn_every``-th decoder layer of the Hugging Face LLM, and a
:class:`~espnet_llm_plugin.retrieval.xattn.ValueEncoder` that turns the utterance's passages
into the memory they read. The blocks are attached with forward hooks on the LLM's decoder
layers (the LLM's own modules and state-dict keys are untouched; the hook handles layers that
return a tensor, as in transformers 5, or a tuple, as in 4.x). Every position of the LLM input
(prompt, speech and text) reads the memory; the blocks are position-wise, so the KV cache of
beam search stays valid: the memory is fixed for an utterance.

Context in, per utterance: LLM token ids of up to ``num_passages`` passages joined by the
tokenizer's eos id (see :func:`espnet_llm_plugin.retrieval.passage_retrieval.context_token_ids`),
batched as ``(B, N)`` with -1 padding (ESPnet's collate). Only the first ``num_passages``
passages (rank order) and their first ``passage_max_tokens`` tokens are used. An utterance
without context gives exactly the base LLM's outputs (the blocks are skipped for it).

* training: ``forward(..., context=, context_lengths=)``, or ``LlmASRModel`` sets the batch's
  context with :meth:`LlmXattnDecoder.batch_context` around ESPnet's forward.
* beam search: :meth:`LlmXattnDecoder.set_context` once per utterance (see :func:`feed_context`
  for ``Speech2Text``); the memory is encoded once and shared by all hypotheses.

With all gates at zero (their initial value) the outputs equal :class:`LlmDecoder` 's exactly.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
from espnet_llm_plugin.retrieval.passage_retrieval import context_token_ids
from espnet_llm_plugin.retrieval.xattn import GatedCrossAttentionBlock, ValueEncoder, default_memory_dim

logger = logging.getLogger(__name__)

Memory = Tuple[torch.Tensor, torch.Tensor]  # (B, M, Dv) memory, (B, M) bool mask


def decoder_layers(causal_lm: nn.Module) -> nn.ModuleList:
    """The decoder-layer list of an HF causal LM (``model.layers`` for Llama/Mistral/Qwen...)."""
    n = getattr(causal_lm.config.get_text_config(decoder=True), "num_hidden_layers", None)
    base = getattr(causal_lm, "model", None)
    layers = getattr(base, "layers", None)
    if isinstance(layers, nn.ModuleList) and (n is None or len(layers) == n):
        return layers
    candidates = [m for _, m in causal_lm.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if len(candidates) != 1:
        raise ValueError(
            f"LlmXattnDecoder: cannot find the {n} decoder layers of {type(causal_lm).__name__} "
            f"(found {len(candidates)} candidate ModuleLists)"
        )
    return candidates[0]


def split_context(
    context: torch.Tensor,
    lengths: Optional[torch.Tensor],
    sep_id: int,
    num_passages: int,
    max_tokens: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flat context ids -> passages.

    Args:
        context: ``(B, N)`` ids, passages separated by ``sep_id``, negative = padding.
        lengths: ``(B,)`` valid ids per row, or None (all of ``N``; negatives still skipped).
        sep_id: the passage separator (the tokenizer's eos id).
        num_passages: keep the first this many passages of each row.
        max_tokens: keep the first this many tokens of each passage.

    Returns:
        ids ``(B, K, L)`` and bool mask ``(B, K, L)``; ``K`` and ``L`` are the largest kept
        counts in the batch (0 when no row has a passage).
    """
    if context.dim() != 2:
        raise ValueError(f"context must be (B, N) token ids, got shape {tuple(context.shape)}")
    rows: List[List[List[int]]] = []
    for b, seq in enumerate(context.tolist()):
        if lengths is not None:
            seq = seq[: int(lengths[b])]
        passages: List[List[int]] = []
        current: List[int] = []
        for t in seq + [sep_id]:
            if t < 0:
                continue
            if t == sep_id:
                if current:
                    passages.append(current[:max_tokens])
                current = []
            else:
                current.append(t)
        rows.append(passages[:num_passages])
    K = max((len(r) for r in rows), default=0)
    L = max((len(p) for r in rows for p in r), default=0)
    ids = torch.zeros(len(rows), K, L, dtype=torch.long)
    mask = torch.zeros(len(rows), K, L, dtype=torch.bool)
    for b, r in enumerate(rows):
        for k, p in enumerate(r):
            ids[b, k, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[b, k, : len(p)] = True
    return ids.to(context.device), mask.to(context.device)


class LlmXattnDecoder(LlmDecoder):
    """``LlmDecoder`` + value encoder + gated cross-attention blocks (``decoder: llm_xattn``).

    Args (besides every :class:`LlmDecoder` option):
        xattn_every: a block after every N-th LLM layer (layers N-1, 2N-1, ...; 1 = all).
        num_passages: passages (top-k, in rank order) read per utterance.
        passage_max_tokens: tokens kept per passage.
        value_encoder_layers: transformer layers of the value encoder (0: none).
        value_encoder_dim: memory width (0: the LLM hidden size).
        xattn_heads: attention heads of the blocks and of the value encoder.
        xattn_ffn_dim: feed-forward width of blocks and value encoder (0: 2 x their width).
        xattn_dropout: dropout in blocks and value encoder.
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
        xattn_every: int = 1,
        num_passages: int = 4,
        passage_max_tokens: int = 64,
        value_encoder_layers: int = 2,
        value_encoder_dim: int = 0,
        xattn_heads: int = 4,
        xattn_ffn_dim: int = 0,
        xattn_dropout: float = 0.0,
    ):
        # spelled out (not **kwargs) so that config checks catch misspelled decoder_conf keys
        super().__init__(
            vocab_size,
            encoder_output_size,
            llm_path=llm_path,
            prompt=prompt,
            prompt_suffix=prompt_suffix,
            finetune=finetune,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            lora_target_modules=lora_target_modules,
            dtype=dtype,
            max_context=max_context,
            gradient_checkpointing=gradient_checkpointing,
            text_start=text_start,
            text_end=text_end,
            chat_template=chat_template,
            text_form=text_form,
            autocast=autocast,
        )
        if num_passages < 1:
            raise ValueError(f"LlmXattnDecoder: decoder_conf.num_passages must be >= 1, got {num_passages}")
        if passage_max_tokens < 1:
            raise ValueError(f"LlmXattnDecoder: decoder_conf.passage_max_tokens must be >= 1, got {passage_max_tokens}")
        layers = decoder_layers(self._causal_lm())
        if not 1 <= xattn_every <= len(layers):
            raise ValueError(
                f"LlmXattnDecoder: decoder_conf.xattn_every must be in 1..{len(layers)} (the LLM's "
                f"layers), got {xattn_every}"
            )
        if xattn_heads < 1 or self.hidden_size % xattn_heads != 0:
            raise ValueError(
                f"LlmXattnDecoder: decoder_conf.xattn_heads {xattn_heads} must divide the LLM hidden "
                f"size {self.hidden_size}"
            )
        memory_dim = default_memory_dim(self.hidden_size, value_encoder_dim)
        if memory_dim % xattn_heads != 0:
            raise ValueError(
                f"LlmXattnDecoder: decoder_conf.xattn_heads {xattn_heads} must divide value_encoder_dim {memory_dim}"
            )
        self.num_passages = num_passages
        self.passage_max_tokens = passage_max_tokens
        self.xattn_layer_ids = [i for i in range(len(layers)) if (i + 1) % xattn_every == 0]
        self.value_encoder = ValueEncoder(
            self.hidden_size,
            memory_dim,
            value_encoder_layers,
            xattn_heads,
            passage_max_tokens,
            ffn_dim=xattn_ffn_dim or None,
            dropout=xattn_dropout,
        )
        self.xattn_blocks = nn.ModuleList(
            GatedCrossAttentionBlock(self.hidden_size, memory_dim, xattn_heads, xattn_ffn_dim or None, xattn_dropout)
            for _ in self.xattn_layer_ids
        )
        for j, i in enumerate(self.xattn_layer_ids):
            layers[i].register_forward_hook(functools.partial(LlmXattnDecoder._xattn_hook, self, j))
        logger.info(
            "LlmXattnDecoder: %d gated cross-attention blocks after LLM layers %s; value encoder %d layers, "
            "width %d; up to %d passages x %d tokens",
            len(self.xattn_blocks),
            self.xattn_layer_ids,
            value_encoder_layers,
            memory_dim,
            num_passages,
            passage_max_tokens,
        )
        self._memory: Optional[Memory] = None  # what the hooks read during one LLM call
        self._batch_context: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self._decode_memory: Optional[Memory] = None
        self._warned_no_context = False

    # ------------------------------------------------------------------ memory
    def _xattn_hook(self, j: int, module: nn.Module, args: Any, output: Any) -> Any:
        if self._memory is None:
            return None  # no context: the layer's output is unchanged
        memory, mask = self._memory
        if isinstance(output, tuple):  # transformers 4.x layers return (hidden, ...)
            return (self.xattn_blocks[j](output[0], memory, mask),) + tuple(output[1:])
        return self.xattn_blocks[j](output, memory, mask)

    def _checkpoint_kwargs(self) -> Dict[str, Any]:
        return {"context_fn": self._checkpoint_contexts}

    def _checkpoint_contexts(self) -> Tuple[ContextManager[None], ContextManager[None]]:
        """``torch.utils.checkpoint`` ``context_fn``: the recomputation reads the forward's memory.

        Called at each checkpointed layer's forward. Transformers versions that checkpoint a
        layer's ``__call__`` (not just its ``forward``) run our forward hook inside the
        recomputed region, during backward, when :meth:`_reading` has long been left; without
        this the recomputation would skip the cross-attention and give wrong gradients.
        """
        return contextlib.nullcontext(), self._reading(self._memory)

    @contextlib.contextmanager
    def _reading(self, memory: Optional[Memory]) -> Iterator[None]:
        previous, self._memory = self._memory, memory
        try:
            yield
        finally:
            self._memory = previous

    def encode_context(self, context: torch.Tensor, context_lengths: Optional[torch.Tensor] = None) -> Optional[Memory]:
        """Context ids ``(B, N)`` -> memory ``(B, K*L, Dv)`` and mask, or None without passages."""
        device = self.value_encoder.proj.weight.device
        ids, mask = split_context(
            context.to(device), context_lengths, self.eos_id, self.num_passages, self.passage_max_tokens
        )
        if ids.size(1) == 0:
            return None
        return self.value_encoder(ids, mask, self._embed())

    @contextlib.contextmanager
    def batch_context(self, context: Optional[torch.Tensor], context_lengths: Optional[torch.Tensor] = None):
        """Let the next ``forward`` calls (ESPnet's loss computation) read this batch's context."""
        previous, self._batch_context = self._batch_context, None if context is None else (context, context_lengths)
        try:
            yield
        finally:
            self._batch_context = previous

    def set_context(self, context: Union[None, str, Sequence[int], torch.Tensor]) -> None:
        """Set one utterance's context for beam search (and :meth:`generate`).

        Args:
            context: flat LLM ids ``(N,)`` / ``(1, N)`` (passages joined by eos), a ``context``
                line value (passages joined by ``|||``; tokenised here), or None (no context:
                outputs of the base LLM).
        """
        self._live_caches.clear()  # caches computed under another memory are invalid
        if context is None:
            self._decode_memory = None
            return
        if isinstance(context, str):
            context = context_token_ids(context, self.tokenizer)
        ids = torch.as_tensor(context, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2 or ids.size(0) != 1:
            raise ValueError(f"LlmXattnDecoder.set_context: one utterance's ids (N,), got shape {tuple(ids.shape)}")
        with torch.no_grad():
            self._decode_memory = self.encode_context(ids)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        context: Optional[torch.Tensor] = None,
        context_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`LlmDecoder.forward` reading ``context`` ``(B, N)`` (or the :meth:`batch_context`)."""
        if context is None and self._batch_context is not None:
            context, context_lengths = self._batch_context
        memory = None
        if context is None and self.training and not self._warned_no_context:
            logger.warning(
                "LlmXattnDecoder: training without context (no 'context' data entry reached the decoder; "
                "is model: llm_asr set and --train_data_path_and_name_and_type <context>,context,text given?)"
            )
            self._warned_no_context = True
        if context is not None:
            if context.size(0) != hs_pad.size(0):
                raise ValueError(f"LlmXattnDecoder: context batch {context.size(0)} != speech batch {hs_pad.size(0)}")
            memory = self.encode_context(context, context_lengths)
        with self._reading(memory):
            return super().forward(hs_pad, hlens, ys_in_pad, ys_in_lens)

    def reload_pretrained_parameters(self) -> None:
        """LLM weights back from ``llm_path`` (see base), our modules to their own init (zero gates)."""
        super().reload_pretrained_parameters()
        self.value_encoder.reset_parameters()
        for block in self.xattn_blocks:
            block.reset_parameters()

    # ------------------------------------------------------------------ beam search
    def init_state(self, x: torch.Tensor) -> Any:
        with self._reading(self._decode_memory):
            return super().init_state(x)

    def batch_score(self, ys: torch.Tensor, states: Sequence[Any], xs: torch.Tensor) -> Tuple[torch.Tensor, List[Any]]:
        with self._reading(self._decode_memory):
            return super().batch_score(ys, states, xs)

    def generate(self, hs: torch.Tensor, *args: Any, **kwargs: Any) -> List[int]:
        with self._reading(self._decode_memory):
            return super().generate(hs, *args, **kwargs)


def feed_context(speech2text: Any, context: Any) -> None:
    """Give ``Speech2Text``'s decoder the utterance's context before decoding it.

    Args:
        speech2text: an ESPnet ``Speech2Text`` (its ``asr_model.decoder``).
        context: what ESPnet's inference loop passed as ``context=`` (ids from a ``text_int``
            ``context_ids`` entry, a ``context`` string, or None).

    Raises:
        ValueError: context given but the decoder is not an ``LlmXattnDecoder``.
    """
    decoder = getattr(getattr(speech2text, "asr_model", None), "decoder", None)
    if isinstance(decoder, LlmXattnDecoder):
        if isinstance(context, torch.Tensor) and context.dim() == 2:
            if context.size(0) != 1:
                raise ValueError(f"feed_context: batch_size 1 decoding only, got context batch {context.size(0)}")
            context = context[0]
        decoder.set_context(context)
    elif context is not None:
        raise ValueError(
            f"data 'context' was given, but the model's decoder ({type(decoder).__name__}) does not "
            f"read context; train with decoder: llm_xattn or drop the context entry"
        )
