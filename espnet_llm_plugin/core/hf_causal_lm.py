"""Load a local Hugging Face causal LM + tokenizer, and reach its parts through peft wrapping.

Only local directories are accepted (``local_files_only=True``): recipes run offline and a
user's 7B model goes through the same ``from_pretrained`` path as our tiny test models.

dtype policy: ``"float32"`` (default), ``"bfloat16"``, ``"float16"``. When the model is to run
on the CPU (``device`` is a CPU device, or ``device`` is None and no CUDA device exists):

- ``bfloat16`` is kept where the CPU does bfloat16 arithmetic natively (x86 AMX or AVX512-BF16,
  the bf16 extension on ARM; see :func:`cpu_supports_bfloat16`). There it halves the weights'
  memory and is faster (SmolLM2-135M, one thread of a Xeon with AMX: a forward pass over 128
  to 512 tokens 2.5-4.9x, a beam-4 decoding step 1.9x faster than float32); elsewhere torch
  emulates it through float32, so it falls back to float32 with a warning.
- ``float16`` always falls back to float32 with a warning (CPU float16 matmuls are emulated).

So a GPU config still runs on a CPU-only machine. With ``device=None`` on a CUDA machine the
model is loaded in the half type on the CPU, because ESPnet builds models on the CPU and moves
them to the GPU later.
"""

from __future__ import annotations

import functools
import inspect
import logging
import platform
import warnings
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Any one of these means "there is a tokenizer here" (fast, sentencepiece, BPE, WordPiece, tiktoken).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tiktoken.model",
)


class LlmLoadError(ValueError):
    """A local LLM directory cannot be loaded; the message names the path and what is missing."""


@functools.lru_cache(maxsize=None)
def cpu_supports_bfloat16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively, so bfloat16 beats float32 there.

    x86: AMX tiles or AVX512-BF16 (``torch.cpu`` feature checks); other architectures (ARM
    with the bf16 extension): oneDNN's bfloat16 check. Then a small bfloat16 matmul must run
    and agree with float32, so a torch build without the kernels answers False too. Cached:
    the answer is fixed for the process.
    """
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        checks = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        native = any(check() for check in checks if check is not None)
    else:
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        native = bool(check()) if check is not None else False
    if not native:
        return False
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(16, 32, generator=g), torch.randn(32, 8, generator=g)
        out = (a.bfloat16() @ b.bfloat16()).float()
    except RuntimeError:  # no bfloat16 matmul kernel in this build
        return False
    # bfloat16 keeps 8 mantissa bits: relative error ~1e-2 on sums of 32 products
    return bool(torch.allclose(out, a @ b, rtol=0.05, atol=0.1))


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: Union[str, torch.device, None] = None) -> torch.dtype:
    """Map a dtype name to a torch dtype, applying the CPU policy of the module docstring.

    Args:
        dtype: ``"float32" | "bfloat16" | "float16"``, a torch dtype, or None (float32).
        device: where the model will run; None means "wherever the caller moves it later".

    Returns:
        the torch dtype to load the model in: float32 in place of a half type that this
        CPU would only emulate (with a warning).
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        torch_dtype = dtype
        if torch_dtype not in DTYPES.values():
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")
    else:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        torch_dtype = DTYPES[dtype]
    if torch_dtype == torch.float32:
        return torch_dtype
    on_cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
    if not on_cpu:
        return torch_dtype
    if torch_dtype == torch.bfloat16 and cpu_supports_bfloat16():
        logger.info("dtype bfloat16 on the CPU: this CPU does bfloat16 arithmetic natively")
        return torch_dtype
    why = (
        "this CPU has no native bfloat16 arithmetic (AMX or AVX512-BF16 on x86, bf16 on ARM)"
        if torch_dtype == torch.bfloat16
        else "float16 needs a CUDA device (the CPU only emulates it)"
    )
    warnings.warn(
        f"dtype {dtype}: the LLM runs on the CPU here and {why}, so it is loaded in float32 instead",
        stacklevel=2,
    )
    return torch.float32


def check_llm_dir(path: Union[str, Path]) -> Path:
    """Raise :class:`LlmLoadError` unless ``path`` is a local HF model dir with a tokenizer."""
    p = Path(path)
    if not str(path):
        raise LlmLoadError("no LLM path given (empty string)")
    if not p.exists():
        raise LlmLoadError(f"LLM path {p} does not exist")
    if not p.is_dir():
        raise LlmLoadError(f"LLM path {p} is not a directory (expected a save_pretrained dir)")
    if not (p / "config.json").is_file():
        raise LlmLoadError(
            f"{p} is not a Hugging Face model directory: no config.json (expected the output of save_pretrained)"
        )
    if not any((p / f).is_file() for f in TOKENIZER_FILES) and not any(p.glob("*.tiktoken")):
        raise LlmLoadError(
            f"{p} has no tokenizer: expected one of {', '.join(TOKENIZER_FILES)} "
            f"(plus tokenizer_config.json); save the tokenizer there with "
            f"tokenizer.save_pretrained('{p}')"
        )
    return p


def llm_input_width(path: Union[str, Path]) -> int:
    """Width of the LLM's input embeddings (what ``inputs_embeds`` and so the adapter output
    must have), read from the directory without loading its weights.

    The model is built on the meta device (no memory, no weights read) and its input embedding
    is measured, so architectures whose embedding width differs from ``hidden_size`` (OPT's
    ``word_embed_proj_dim``) are right too. A model class that cannot be built that way falls
    back to ``hidden_size`` of the config's text config.

    Raises:
        LlmLoadError: ``path`` is not a model directory with a tokenizer, or its config
            cannot be read.
    """
    p = check_llm_dir(path)
    try:
        config = AutoConfig.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # HF raises OSError/ValueError/KeyError depending on the config
        raise LlmLoadError(f"could not read the model config {p / 'config.json'}: {e}") from e
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return input_embedding(model)[1]
    except Exception as e:  # e.g. a class needing remote code: the config still says it
        logger.info("%s: could not build the model on the meta device (%s); using hidden_size", p, e)
    text = config.get_text_config(decoder=True)
    width = getattr(text, "hidden_size", None)
    if not width:
        raise LlmLoadError(f"{p / 'config.json'}: no hidden_size in the (text) config")
    return int(width)


def load_causal_lm(
    path: Union[str, Path],
    dtype: Union[str, torch.dtype, None] = None,
    device: Union[str, torch.device, None] = None,
) -> Tuple[torch.nn.Module, Any]:
    """Load ``AutoModelForCausalLM`` and ``AutoTokenizer`` from a local directory.

    Args:
        path: a directory written by ``save_pretrained`` (model and tokenizer).
        dtype: see :func:`resolve_dtype`.
        device: move the model there (None: stay on the CPU).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode.

    Raises:
        LlmLoadError: the path is missing, not a model dir, lacks a tokenizer, or loading fails.
    """
    p = check_llm_dir(path)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # HF raises OSError/ValueError/KeyError depending on the file type
        raise LlmLoadError(f"could not load the tokenizer from {p}: {e}") from e
    try:
        model = AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True, dtype=torch_dtype)
    except Exception as e:
        raise LlmLoadError(f"could not load a causal LM from {p}: {e}") from e
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tokenizer


def unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a peft wrapper (LoRA layers stay injected), else ``model``."""
    if isinstance(model, PeftModel):
        return model.get_base_model()
    return model


def input_embedding(model: torch.nn.Module) -> Tuple[torch.nn.Module, int]:
    """``(embedding module, hidden size)`` of a causal LM, peft-wrapped or not.

    The hidden size is the embedding width, i.e. what ``inputs_embeds`` must have as last dim.
    """
    emb = unwrap_peft(model).get_input_embeddings()
    weight = getattr(emb, "weight", None)
    if weight is not None:
        return emb, int(weight.shape[-1])
    config = unwrap_peft(model).config
    return emb, int(config.get_text_config(decoder=True).hidden_size)


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument of ``model.forward``.

    transformers >= 5.2x calls it ``cache`` (``past_key_values`` is deprecated), earlier
    versions ``past_key_values``.
    """
    params = inspect.signature(unwrap_peft(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache of a model output (``cache`` or, in older transformers, ``past_key_values``)."""
    for name in ("cache", "past_key_values"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise RuntimeError("the LLM returned no KV cache although use_cache=True was passed")


def max_positions(model: torch.nn.Module) -> Optional[int]:
    """The model's context length (``max_position_embeddings``), or None if it has none."""
    config = unwrap_peft(model).config.get_text_config(decoder=True)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None
