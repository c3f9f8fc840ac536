"""Whisper as a first pass: beam search over a Kaldi data directory into ESPnet's n-best layout.

The rescoring and retrieval stages take these lists as they take ESPnet's. Whisper ranks beams
by log-probability divided by the number of scored tokens (text tokens + end token; a beam cut
at the length limit has no end token), so the lists are written with that score and say so:
``score_info.json`` has ``score_kind: per_token`` (with the source model, beam size and length
penalty), each hypothesis' count is in ``{n}best_recog/num_tokens`` and its total
log-probability in ``score_whisper_logprob``. Readers turn the scores into totals
(:func:`espnet_llm_plugin.rescoring.nbest.read_espnet_nbest`) before adding an LM's total.

Whisper writes cased, punctuated text; recipes keep transcripts in their own form (upper case,
no punctuation for ESPnet's), so ``text`` is mapped with a :class:`TextForm` and Whisper's own
text is kept in ``{n}best_recog/text_raw``. Beams come from the generic generation path, which
returns distinct hypotheses (Whisper's own ``generate`` repeats one for
``num_return_sequences``); distinctness is checked on the tokens, and beams whose text is the
same once mapped (``"mat."`` and ``"mat"``) are kept once, the better one. Inputs are padded to
30 s, the only length Whisper's decoder was trained to stop on; a longer utterance is cut to its
first 30 s with a warning naming it (Whisper has no longer context).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch

from espnet_llm_plugin.core.text_form import TextForm, infer_recipe_case
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
from espnet_llm_plugin.rescoring.nbest import Hypothesis, NBest, write_espnet_files

logger = logging.getLogger(__name__)

MAX_SECONDS = 30.0  # Whisper's input window
LENGTH_PENALTY = 1.0  # beam score = sum of log-probs / tokens ** LENGTH_PENALTY (Whisper's rule)
LOGPROB_SCORE = "whisper_logprob"  # the named score holding each beam's total log-probability
# Whisper's text -> the recipe's form: no punctuation, in the case of the data dir's own
# transcripts ("auto": upper, as ESPnet recipes keep them, when the data dir has none)
RECIPE_TEXT_FORM = {"case": "as_is", "punctuation": "strip", "recipe_case": "auto"}


@dataclass
class WhisperFirstPassOptions:
    """Options of :func:`whisper_first_pass`.

    Attributes:
        beam_size: beams searched; ``nbest`` (<= ``beam_size``) of them are written.
        max_new_tokens: text tokens a beam may have (None: up to the model's decoder length).
        text_form: Whisper's text -> the written ``text``, a :class:`TextForm` mapping
            (``to_recipe``); ``recipe_case: auto`` (the default) takes the case of the data
            dir's transcripts (upper without any), and punctuation is stripped.
        distinct_text: keep one beam per written text (the best).
        device: ``cpu``, ``cuda``, ``cuda:1`` ...
    """

    beam_size: int = 8
    nbest: int = 8
    max_new_tokens: Optional[int] = None
    text_form: Dict[str, str] = field(default_factory=lambda: dict(RECIPE_TEXT_FORM))
    distinct_text: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.beam_size < 1 or not 1 <= self.nbest <= self.beam_size:
            raise ValueError(f"need beam_size >= 1 and 1 <= nbest <= beam_size, got {self.beam_size}, {self.nbest}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        self.form()  # checks the text form

    def form(self, recipe_texts: Iterable[str] = ()) -> TextForm:
        """The text form, ``recipe_case: auto`` resolved from ``recipe_texts`` (the data
        dir's transcripts; upper case when there are none)."""
        form = dict(self.text_form)
        if form.get("recipe_case") == "auto":
            texts = list(recipe_texts)
            form["recipe_case"] = infer_recipe_case(texts) if texts else "upper"
        return TextForm.from_dict(form, "whisper first pass text_form")


def decode_utterance(model: Any, processor: Any, wav: Any, opts: WhisperFirstPassOptions) -> List[Dict[str, Any]]:
    """The n-best of one utterance ``(T,)`` at 16 kHz, best first, distinct token sequences.

    Returns:
        dicts with ``tokens`` (text token ids), ``raw`` (Whisper's text), ``score`` (log-prob
        per scored token, Whisper's beam score), ``num_tokens`` (scored tokens: text + end
        token, or text only for a beam cut at the length limit) and ``ended`` (whether the beam
        ended with the end token). At most ``opts.nbest``.
    """
    device = next(model.parameters()).device
    features = log_mel(processor, wav).to(device)  # (1, n_mels, 3000): padded to 30 s
    prompt = whisper_prompt(processor.tokenizer, bool(model.generation_config.is_multilingual))
    limit = model.config.max_target_positions
    max_length = limit if opts.max_new_tokens is None else min(limit, len(prompt) + opts.max_new_tokens)
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state  # (1, 1500, D)
    beams = generate_nbest(
        model,
        None,
        prompt,
        num_beams=opts.beam_size,
        num_return=opts.beam_size,
        max_length=max_length,
        encoded=encoded,
    )
    out, seen = [], set()
    for tokens, score in beams:
        if tuple(tokens) in seen:  # distinct token sequences only
            continue
        seen.add(tuple(tokens))
        ended = len(prompt) + len(tokens) < max_length  # else cut at the limit: no end token scored
        if score is None:  # greedy (beam 1): score the one hypothesis
            score = per_token_logprob(model, encoded, prompt, tokens, ended)
        raw = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        n = len(tokens) + int(ended)
        out.append({"tokens": tokens, "raw": raw, "score": float(score), "num_tokens": n, "ended": ended})
    return out[: opts.nbest]


def per_token_logprob(
    model: Any, encoded: torch.Tensor, prompt: List[int], tokens: List[int], ended: bool = True
) -> float:
    """Log-probability of ``tokens`` (+ the end token when ``ended``) after ``prompt``, divided
    by their count, with the generation config's suppressed tokens masked and the rest
    renormalised (as in beam search, so this equals a beam's score).

    Args:
        encoded: the encoder output ``(1, T, D)``.
    """
    gen = model.generation_config
    ids = torch.tensor([prompt + tokens + ([gen.eos_token_id] if ended else [])], device=encoded.device)
    with torch.no_grad():
        logits = model(encoder_outputs=(encoded,), decoder_input_ids=ids[:, :-1]).logits[0, len(prompt) - 1 :]
    logits = logits.float().clone()  # (n, vocab)
    logits[:, list(gen.suppress_tokens or [])] = float("-inf")
    logits[0, list(gen.begin_suppress_tokens or [])] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    target = ids[0, len(prompt) :]
    return float(logp.gather(1, target[:, None]).sum()) / len(target)


def _select_utterances(utts: List[str], key_file: Optional[str | Path], data_dir: str | Path) -> List[str]:
    if key_file is None:
        return utts
    keys = [line.split(maxsplit=1)[0] for line in Path(key_file).read_text().splitlines() if line.strip()]
    unknown = sorted(set(keys) - set(utts))
    if unknown:
        raise ValueError(f"{key_file}: utterance '{unknown[0]}' is not in {data_dir}")
    wanted = set(keys)
    return [u for u in utts if u in wanted]


def whisper_first_pass(
    whisper_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    opts: WhisperFirstPassOptions,
    key_file: Optional[str | Path] = None,
) -> Dict[str, Any]:
    """Decode every utterance of ``data_dir`` (or those listed in ``key_file``, one job's
    share) into ``out_dir`` (ESPnet's ``{n}best_recog/{text,text_raw,score,num_tokens,
    score_whisper_logprob}`` layout plus ``text``, ``score_info.json`` and ``timing.json``),
    replacing it atomically: it appears only when every utterance is decoded.

    Returns:
        ``{"utterances", "elapsed_s", "audio_s", "cut_at_30s", "same_text_dropped"}``.

    Raises:
        ValueError: a bad data dir or key file (checked before the model loads), or a
            directory that is not a prepared Whisper.
    """
    data = load_data_dir(data_dir, require_text=False)  # bad data is named before the model loads
    utts = _select_utterances(data.utt_ids, key_file, data_dir)
    if not utts:
        raise ValueError(f"{key_file or data_dir}: no utterance to decode")
    try:
        model, processor = load_whisper_dir(Path(whisper_dir))
    except OSError as e:
        raise ValueError(
            f"{whisper_dir} is not a prepared Whisper directory ({e}); prepare one with "
            "python -m espnet_llm_plugin.bin.prepare_pretrained whisper-tiny.en"
        ) from None
    model.to(opts.device)
    form = opts.form((data.text or {}).values())
    if opts.text_form.get("recipe_case") == "auto":
        logger.info("hypotheses written in the data dir's case: %s", form.recipe_case)
    nbest: NBest = {}
    raw: Dict[str, List[str]] = {}
    cut, dropped = [], 0
    progress = ProgressLog(len(utts), "decoded utterances")
    start, audio_s = time.perf_counter(), 0.0
    for utt in utts:
        spec, begin, end = data.audio_source(utt)
        wav, sr = read_audio(spec, utt, begin, end)
        audio_s += len(wav) / sr
        if len(wav) > MAX_SECONDS * sr:
            logger.warning("utterance '%s' is %.1f s long: Whisper decodes its first 30 s", utt, len(wav) / sr)
            cut.append(utt)
        nbest[utt], raw[utt] = [], []
        for h in decode_utterance(model, processor, resample(wav, sr, SAMPLING_RATE), opts):
            text = form.to_recipe(h["raw"])
            if opts.distinct_text and any(text == kept.text for kept in nbest[utt]):
                dropped += 1  # the same text as a better beam once mapped (e.g. "mat." / "mat")
                continue
            total = h["score"] * h["num_tokens"]
            nbest[utt].append(
                Hypothesis(text, h["score"], {LOGPROB_SCORE: total}, num_tokens=h["num_tokens"], score_kind="per_token")
            )
            raw[utt].append(h["raw"])
        progress.tick()
    elapsed = time.perf_counter() - start
    info = {
        "source_model": Path(whisper_dir).name,
        "beam_size": opts.beam_size,
        "nbest": opts.nbest,
        "length_penalty": LENGTH_PENALTY,
        "max_new_tokens": opts.max_new_tokens,
        "text_form": form.to_dict(),
    }
    timing = {"elapsed_s": elapsed, "audio_s": audio_s}
    with atomic_dir(out_dir) as tmp:
        write_espnet_files(nbest, tmp, info)  # + score_info.json (score_kind per_token)
        for rank in range(1, max(len(h) for h in nbest.values()) + 1):
            lines = [f"{u} {raw[u][rank - 1]}".rstrip() + "\n" for u in sorted(nbest) if len(raw[u]) >= rank]
            (tmp / f"{rank}best_recog" / "text_raw").write_text("".join(lines), encoding="utf-8")
        (tmp / "timing.json").write_text(json.dumps(timing) + "\n")
    logger.info("whisper first pass: %d utterances, %.1f s for %.1f s of audio", len(nbest), elapsed, audio_s)
    return {"utterances": len(nbest), **timing, "cut_at_30s": cut, "same_text_dropped": dropped}
