"""Whisper as a first pass: beam search over a Kaldi data directory into ESPnet's n-best layout.

The rescoring and retrieval stages take these lists as they take ESPnet's. Whisper ranks beams
by log-probability divided by token count (text tokens + end token), so the lists are written
with that score and ``score_info.json`` says so (``score_kind: per_token``, each hypothesis'
count in ``score_num_tokens``): readers turn it into a total log-probability
(:func:`espnet_llm_plugin.rescoring.nbest.read_espnet_nbest`) before adding an LM's total.

Whisper writes cased, punctuated text; recipes keep transcripts in their own form (upper case,
no punctuation for ESPnet's), so ``text`` is mapped with a :class:`TextForm` and Whisper's own
text is kept in ``{n}best_recog/text_raw``. Beams come from the generic generation path, which
returns distinct hypotheses (Whisper's own ``generate`` repeats one for
``num_return_sequences``); inputs are padded to 30 s, the only length Whisper's decoder was
trained to stop on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from espnet_llm_plugin.core.text_form import TextForm
from espnet_llm_plugin.decoding.progress import ProgressLog
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.fileio.audio import read_audio, resample
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir
from espnet_llm_plugin.pretrained.ctranslate2_whisper import (
    SAMPLING_RATE,
    generate_nbest,
    load_whisper_dir,
    log_mel,
    whisper_prompt,
)
from espnet_llm_plugin.rescoring.nbest import NUM_TOKENS, Hypothesis, NBest, write_espnet_files, write_score_info

logger = logging.getLogger(__name__)


@dataclass
class WhisperFirstPassOptions:
    """``beam_size`` beams, the best ``nbest`` of them written; ``max_length``: decoder tokens
    including the prompt (None: the model's limit); ``text_form``: Whisper's text -> the
    recipe's (default: upper case without punctuation, ESPnet's recipes)."""

    beam_size: int = 8
    nbest: int = 8
    max_length: Optional[int] = None
    case: str = "upper"
    punctuation: str = "strip"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.beam_size < 1 or not 1 <= self.nbest <= self.beam_size:
            raise ValueError(f"need beam_size >= 1 and 1 <= nbest <= beam_size, got {self.beam_size}, {self.nbest}")
        self.text_form()  # checks case/punctuation

    def text_form(self) -> TextForm:
        # Whisper's text is the "LLM" side; to_recipe strips punctuation and applies the case
        return TextForm(case="as_is", punctuation=self.punctuation, recipe_case=self.case)


def decode_utterance(model: Any, processor: Any, wav: Any, opts: WhisperFirstPassOptions) -> List[Dict[str, Any]]:
    """The n-best of one utterance ``(T,)`` at 16 kHz, best first: dicts with ``tokens`` (text
    token ids), ``raw`` (Whisper's text), ``score`` (log-prob per token) and ``num_tokens``."""
    device = next(model.parameters()).device
    features = log_mel(processor, wav).to(device)
    prompt = whisper_prompt(processor.tokenizer, bool(model.generation_config.is_multilingual))
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state
    beams = generate_nbest(
        model,
        None,
        prompt,
        num_beams=opts.beam_size,
        num_return=opts.beam_size,
        max_length=opts.max_length,
        encoded=encoded,
    )
    out, seen = [], set()
    for tokens, score in beams:
        if tuple(tokens) in seen:  # distinct token sequences only
            continue
        seen.add(tuple(tokens))
        if score is None:  # greedy (beam 1): score the one hypothesis
            score = _per_token_logprob(model, encoded, prompt, tokens)
        raw = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        out.append({"tokens": tokens, "raw": raw, "score": float(score), "num_tokens": len(tokens) + 1})
    return out[: opts.nbest]


def _per_token_logprob(model: Any, encoded: torch.Tensor, prompt: List[int], tokens: List[int]) -> float:
    """Log-probability of ``tokens`` + end token after ``prompt``, divided by their count, with
    the generation config's suppressed tokens masked and the rest renormalised (as in beam
    search, so this equals a beam's score)."""
    gen = model.generation_config
    ids = torch.tensor([prompt + tokens + [gen.eos_token_id]], device=encoded.device)
    with torch.no_grad():
        logits = model(encoder_outputs=(encoded,), decoder_input_ids=ids[:, :-1]).logits[0, len(prompt) - 1 :]
    logits = logits.float().clone()
    logits[:, list(gen.suppress_tokens or [])] = float("-inf")
    logits[0, list(gen.begin_suppress_tokens or [])] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    target = ids[0, len(prompt) :]
    return float(logp.gather(1, target[:, None]).sum()) / len(target)


def whisper_first_pass(
    whisper_dir: str | Path, data_dir: str | Path, out_dir: str | Path, opts: WhisperFirstPassOptions
) -> Dict[str, Any]:
    """Decode every utterance of ``data_dir`` into ``out_dir`` (ESPnet's ``{n}best_recog``
    layout plus ``text``, ``score_info.json`` and ``timing.json``), replacing it atomically.

    Returns:
        ``{"utterances", "elapsed_s", "audio_s"}``.
    """
    data = load_data_dir(data_dir, require_text=False)  # bad data is named before the model loads
    try:
        model, processor = load_whisper_dir(Path(whisper_dir))
    except OSError as e:
        raise ValueError(
            f"{whisper_dir} is not a prepared Whisper directory ({e}); prepare one with "
            "python -m espnet_llm_plugin.bin.prepare_pretrained whisper-tiny.en"
        ) from None
    model.to(opts.device)
    form = opts.text_form()
    nbest: NBest = {}
    raw: Dict[str, List[str]] = {}
    progress = ProgressLog(len(data.utt_ids), "decoded utterances")
    start, audio_s = time.perf_counter(), 0.0
    for utt in data.utt_ids:
        spec, begin, end = data.audio_source(utt)
        wav, sr = read_audio(spec, utt, begin, end)
        audio_s += len(wav) / sr
        hyps = decode_utterance(model, processor, resample(wav, sr, SAMPLING_RATE), opts)
        nbest[utt] = [
            Hypothesis(text=form.to_recipe(h["raw"]), score=h["score"], scores={NUM_TOKENS: float(h["num_tokens"])})
            for h in hyps
        ]
        raw[utt] = [h["raw"] for h in hyps]
        progress.tick()
    elapsed = time.perf_counter() - start
    info = {"score_kind": "per_token", "source": f"whisper {Path(whisper_dir).name}", **asdict(opts)}
    with atomic_dir(out_dir) as tmp:
        write_espnet_files(nbest, tmp)
        for rank in range(1, max(len(h) for h in nbest.values()) + 1):
            lines = [f"{u} {raw[u][rank - 1]}\n" for u in sorted(nbest) if len(raw[u]) >= rank]
            (tmp / f"{rank}best_recog" / "text_raw").write_text("".join(lines), encoding="utf-8")
        write_score_info(tmp, info)
        timing = {"elapsed_s": elapsed, "audio_s": audio_s}
        (tmp / "timing.json").write_text(json.dumps(timing) + "\n")
    logger.info("whisper first pass: %d utterances, %.1f s for %.1f s of audio", len(nbest), elapsed, audio_s)
    return {"utterances": len(nbest), **timing}
