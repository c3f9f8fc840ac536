"""A tiny random Whisper (``WhisperForConditionalGeneration`` + ``WhisperProcessor``) saved as a
prepared Whisper directory, for fast structure tests of the Whisper first pass (the real
Whisper tiny.en is tested too, under the ``real_model`` marker):

    whisper_dir = build_tiny_whisper_dir(tmp_path / "whisper")   # load_whisper_dir() reads it

The tokenizer is a byte-level BPE trained on a few sentences (about 300 ids, Whisper's special
tokens first); the model has 1 encoder and 1 decoder layer of width 16 (random weights, seeded),
Whisper's 80 mel bins and 30 s input (1500 encoder positions), and decodes at most
``max_target_positions`` tokens, so its beams end at that length or on an end token.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")
SENTENCES = ("The cat sat on the mat.", "Please call Stella, and ask her to bring these things!")


def tiny_whisper_tokenizer():
    """A ``WhisperTokenizerFast`` (byte-level BPE, ids 0-4 = :data:`SPECIALS`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(SENTENCES) * 10, trainer)
    end = SPECIALS[0]
    return WhisperTokenizerFast(tokenizer_object=tok, bos_token=end, eos_token=end, unk_token=end, pad_token=end)


def build_tiny_whisper_dir(out_dir: str | Path, seed: int = 0, max_target_positions: int = 24) -> Path:
    """Save a tiny random English-only Whisper and its processor to ``out_dir``; returns it.

    The generation config is Whisper's shape: ``decoder_start_token_id`` =
    ``<|startoftranscript|>``, end token ``<|endoftext|>`` (also begin-suppressed, so no
    hypothesis is empty), a few suppressed ids and ``is_multilingual: false``.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    out_dir = Path(out_dir)
    tokenizer = tiny_whisper_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    end, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=max_target_positions,
        decoder_start_token_id=start,
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start,
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        max_length=max_target_positions,
        is_multilingual=False,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        suppress_tokens=[ids["<|en|>"], ids["<|transcribe|>"]],
        begin_suppress_tokens=[end],
    )
    model.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(
        out_dir
    )
    return out_dir
