"""Train a sentencepiece model on transcripts and write ESPnet's token list.

Input is a Kaldi ``text`` file (utterance id first; empty transcripts of non-speech
segments are skipped) or plain text with ``--has_ids false``. Output: ``OUT_DIR/bpe.model``
and ``OUT_DIR/tokens.txt`` (``<blank>``, ``<unk>``, the pieces, ``<sos/eos>``), or a
character list with ``--token_type char``. With ``--token_type hugging_face --tokenizer DIR``
the token list is that Hugging Face tokenizer's vocabulary in id order (ESPnet ids are then
the LLM's ids; nothing is trained).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import cli_parser, str2bool
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp

SPECIAL_HEAD = ["<blank>", "<unk>"]
SPECIAL_TAIL = ["<sos/eos>"]


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("make_token_list", __doc__)
    p.add_argument("--text", type=Path, default=None, help="training transcripts (bpe, char)")
    p.add_argument("--has_ids", type=str2bool, default=True, help="lines start with an utt id")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--token_type", choices=["bpe", "char", "hugging_face"], default="bpe")
    p.add_argument(
        "--tokenizer", type=Path, default=None, help="Hugging Face model/tokenizer dir (--token_type hugging_face)"
    )
    p.add_argument("--vocab_size", type=int, default=100, help="sentencepiece vocabulary size")
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--character_coverage", type=float, default=1.0)
    return p


def read_sentences(path: Path, has_ids: bool) -> List[str]:
    if has_ids:
        sentences = [t for t in read_scp(path, allow_empty_value=True).values() if t.strip()]
    else:
        if not path.is_file():
            raise DataDirError(f"{path}: file not found")
        sentences = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise DataDirError(f"{path}: no non-empty transcript to build a token list from")
    return sentences


def build_token_list(
    sentences: List[str],
    out_dir: Path,
    token_type: str,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
) -> List[str]:
    """Write ``out_dir`` (atomically) and return the token list."""
    with atomic_dir(out_dir) as tmp:
        if token_type == "char":
            # ESPnet's char tokenizer writes spaces as <space>; most frequent first
            counts = Counter("<space>" if c == " " else c for s in sentences for c in s)
            tokens = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        else:
            import sentencepiece as spm

            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, dir=tmp) as f:
                f.write("\n".join(sentences) + "\n")
                corpus = f.name
            spm.SentencePieceTrainer.train(
                input=corpus,
                model_prefix=str(tmp / "bpe"),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                input_sentence_size=100_000_000,
                num_threads=1,  # deterministic
                # a soft limit: small corpora get fewer pieces instead of an error
                hard_vocab_limit=model_type != "unigram",
                minloglevel=2,
            )
            Path(corpus).unlink()
            sp = spm.SentencePieceProcessor(model_file=str(tmp / "bpe.model"))
            tokens = [
                sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))
            ]
        token_list = SPECIAL_HEAD + tokens + SPECIAL_TAIL
        (tmp / "tokens.txt").write_text("\n".join(token_list) + "\n")
    return token_list


def hf_token_list(tokenizer_dir: Path) -> List[str]:
    """The vocabulary of a local Hugging Face tokenizer, in id order."""
    if not Path(tokenizer_dir).is_dir():
        raise DataDirError(f"--tokenizer {tokenizer_dir}: directory not found")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataDirError(f"--tokenizer {tokenizer_dir}: no loadable tokenizer: {e}") from e
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    for i, t in enumerate(tokens):
        if t is None or t == "" or "\n" in t or t != t.strip():
            raise DataDirError(
                f"--tokenizer {tokenizer_dir}: token id {i} ({t!r}) cannot be written to a "
                "one-token-per-line ESPnet token list"
            )
    if len(set(tokens)) != len(tokens):
        raise DataDirError(f"--tokenizer {tokenizer_dir}: duplicate token strings in the vocabulary")
    return tokens


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.token_type == "hugging_face":
        if args.tokenizer is None:
            sys.exit("make_token_list: error: --token_type hugging_face needs --tokenizer DIR")
        try:
            tokens = hf_token_list(args.tokenizer)
        except DataDirError as e:
            sys.exit(f"make_token_list: error: {e}")
        with atomic_dir(args.out_dir) as tmp:
            (tmp / "tokens.txt").write_text("\n".join(tokens) + "\n")
        logging.info("wrote %d tokens of %s to %s", len(tokens), args.tokenizer, args.out_dir)
        return
    if args.text is None:
        sys.exit(f"make_token_list: error: --token_type {args.token_type} needs --text")
    try:
        sentences = read_sentences(args.text, args.has_ids)
        tokens = build_token_list(
            sentences,
            args.out_dir,
            args.token_type,
            args.vocab_size,
            args.model_type,
            args.character_coverage,
        )
    except (DataDirError, RuntimeError, OSError) as e:  # sentencepiece raises the latter two
        sys.exit(f"make_token_list: error: {e}")
    logging.info("wrote %d tokens to %s", len(tokens), args.out_dir / "tokens.txt")


if __name__ == "__main__":
    main()
