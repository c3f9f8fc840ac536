"""The embedded demo corpus: Kaldi data directories of espeak-ng speech (``bin/synthesize_corpus``).

Writes under OUT_DIR:

  train/ dev/ test/   general-domain speech; train and dev also hold noise-only segments
                      with empty transcripts
  test_target/        target-domain speech (space missions: names and rare words)
  test_noise/         noise-only segments with empty transcripts (for counting insertions)
  dev_target/         target-domain development speech (with --num_target_dev; for tuning
                      retrieval options such as the kNN-LM weight on the target domain)
  target_memory/      target-domain speech of the first --num_target_memory sentences of
                      local/target_text.txt: an in-domain speech+text memory (multi-modal
                      retrieval), never a test sentence
  local/train_text.txt    general-domain LM text (train transcripts and more; no dev/test)
  local/target_text.txt   target-domain text corpus (no test_target sentence in it)
  local/passages.jsonl    retrieval passages about the target domain's entities

Each data directory has wav.scp (absolute paths of 16-bit WAV files under --audio_dir),
text, utt2spk, spk2utt and utt2synth.json (voice, rate, pitch, noise, SNR per utterance).
Utterance ids are <speaker>-<set>-<index>, the speaker being the espeak-ng voice.

Everything is deterministic by --seed, whatever --nj. A finished run leaves OUT_DIR/.done
holding its arguments; running again with the same arguments does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile
from tqdm import tqdm

from espnet_llm_plugin.corpus.espeak_synth import (
    derive_seed,
    espeak_binary,
    make_noise_segment,
    sample_synth_params,
    synthesize,
)
from espnet_llm_plugin.corpus.sentence_grammar import (
    build_world,
    generate_passages,
    generate_sentences,
    generate_target_corpus,
)
from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_write_text
from espnet_llm_plugin.fileio.kaldi_data import DataDir, DataDirError, read_scp

# Bump when a change to the generators changes the corpus, so old outputs are redone.
CORPUS_VERSION = 1
NOISE_SPEAKER = "noise"
NOISE_DURATION_S = (1.0, 4.0)
SETS = ("train", "dev", "test", "test_target", "test_noise", "dev_target", "target_memory")


@dataclass(frozen=True)
class CorpusConfig:
    """What the corpus contains; equal configs give identical corpora."""

    seed: int = 0
    num_train: int = 3000
    num_dev: int = 200
    num_test: int = 200
    num_target_test: int = 200
    num_target_dev: int = 0
    num_target_memory: int = 0
    num_noise_train: int = 150
    num_noise_dev: int = 20
    num_noise_test: int = 50
    num_passages: int = 300
    num_target_text: int = 5000
    num_extra_train_text: int = 5000
    fs: int = 16000

    def check(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if name != "seed" and value < 0:
                raise ValueError(f"--{name} must not be negative, got {value}")
        if self.num_target_memory > self.num_target_text:
            raise ValueError(
                f"--num_target_memory ({self.num_target_memory}) cannot exceed --num_target_text "
                f"({self.num_target_text}): the memory speaks sentences of the target text"
            )
        if self.fs <= 0:
            raise ValueError(f"--fs must be positive, got {self.fs}")


@dataclass(frozen=True)
class Job:
    """One utterance to make: ``text`` spoken when ``is_speech``, else a noise-only segment."""

    utt_id: str
    text: str
    is_speech: bool
    seed: int
    wav_path: str
    fs: int


# --- text ----------------------------------------------------------------------------------


@dataclass
class CorpusTexts:
    """All text of the corpus: transcripts per set, LM texts and passages."""

    by_set: Dict[str, List[str]]  # transcripts of the speech utterances of each set
    train_text: List[str]
    target_text: List[str]
    passages: List[Dict]


def make_texts(cfg: CorpusConfig) -> CorpusTexts:
    """All sentences and passages of the corpus, split without overlap: general test, dev,
    train and extra LM text come from one pool; test_target and dev_target avoid passage
    sentences, target_text (and target_memory, its first sentences) avoids both."""
    counts = [cfg.num_test, cfg.num_dev, cfg.num_train, cfg.num_extra_train_text]
    pool = generate_sentences("general", sum(counts), cfg.seed)
    bounds = np.cumsum([0] + counts)
    test, dev, train, extra = (pool[bounds[i] : bounds[i + 1]] for i in range(4))
    passages = generate_passages(cfg.num_passages, cfg.seed)
    passage_sentences = {s for p in passages for s in p["sentences"]}
    # One draw for both, test first: adding a dev set leaves test_target as it was.
    target_speech = generate_sentences(
        "target", cfg.num_target_test + cfg.num_target_dev, cfg.seed, exclude=passage_sentences
    )
    target_test = target_speech[: cfg.num_target_test]
    target_dev = target_speech[cfg.num_target_test :]
    target_text = generate_target_corpus(cfg.num_target_text, cfg.seed, exclude=set(target_speech))
    return CorpusTexts(
        by_set={
            "train": train,
            "dev": dev,
            "test": test,
            "test_target": target_test,
            "dev_target": target_dev,
            "target_memory": target_text[: cfg.num_target_memory],
        },
        train_text=train + extra,
        target_text=target_text,
        passages=passages,
    )


def check_entity_coverage(cfg: CorpusConfig, target_test: List[str], passages: List[Dict]) -> List[str]:
    """Rare entities named in ``test_target`` that no passage mentions (logged)."""
    covered = {e for p in passages for e in p["entities"]}
    used = {w for s in target_test for w in s.split()}
    missing = sorted(e for e in build_world(cfg.seed).rare_entities() if e in used and e not in covered)
    if missing:
        logging.warning(
            "%d rare entities of test_target appear in no passage (e.g. %s); use --num_passages "
            "%d or more so that every mission has one",
            len(missing),
            ", ".join(missing[:5]),
            len(build_world(cfg.seed).missions),
        )
    return missing


# --- audio ---------------------------------------------------------------------------------


def plan_jobs(cfg: CorpusConfig, texts: CorpusTexts, audio_dir: Path) -> Dict[str, List[Job]]:
    """The utterances of each set, with ids ``<speaker>-<set>-<index>`` and their seeds."""
    noise_counts = {
        "train": cfg.num_noise_train,
        "dev": cfg.num_noise_dev,
        "test_noise": cfg.num_noise_test,
    }
    plan: Dict[str, List[Job]] = {}
    for set_name in SETS:
        sentences = texts.by_set.get(set_name, [])
        items = [(s, True) for s in sentences] + [("", False)] * noise_counts.get(set_name, 0)
        jobs = []
        for index, (text, is_speech) in enumerate(items):
            key = f"{set_name}-{index:05d}"
            seed = derive_seed(cfg.seed, key)
            speaker = sample_synth_params(np.random.default_rng(seed)).speaker if is_speech else NOISE_SPEAKER
            utt_id = f"{speaker}-{key}"
            wav_path = str(audio_dir / set_name / f"{utt_id}.wav")
            jobs.append(Job(utt_id, text, is_speech, seed, wav_path, cfg.fs))
        plan[set_name] = jobs
    return plan


def make_utterance(job: Job, out_path: Optional[str] = None) -> Tuple[str, int, Dict]:
    """Synthesise one job into ``out_path`` (default ``job.wav_path``); returns the id, the
    number of samples and the parameters used."""
    rng = np.random.default_rng(job.seed)
    if job.is_speech:
        params = sample_synth_params(rng)
        wav = synthesize(job.text, params, job.fs, job.utt_id)
        info = params.to_dict()
    else:
        wav, info = make_noise_segment(float(rng.uniform(*NOISE_DURATION_S)), rng, job.fs)
        info = {"speaker": NOISE_SPEAKER, **info}
    soundfile.write(out_path or job.wav_path, wav, job.fs, subtype="PCM_16")
    return job.utt_id, len(wav), info


def _make_utterance_in(args: Tuple[Job, str]) -> Tuple[str, int, Dict]:
    return make_utterance(*args)


def synthesize_jobs(jobs: List[Tuple[Job, str]], nj: int) -> Dict[str, Dict]:
    """Run ``(job, output path)`` pairs on ``nj`` processes; returns parameters by utt id."""
    results: Dict[str, Dict] = {}
    progress = tqdm(total=len(jobs), desc="synthesize", unit="utt", disable=None, mininterval=2)
    with contextlib.ExitStack() as stack:
        if nj > 1 and len(jobs) > 1:
            pool = stack.enter_context(multiprocessing.get_context().Pool(nj))
            outputs = pool.imap_unordered(_make_utterance_in, jobs, chunksize=8)
        else:
            outputs = map(_make_utterance_in, jobs)
        for utt_id, _, info in outputs:
            results[utt_id] = info
            progress.update()
    progress.close()
    return results


# --- outputs -------------------------------------------------------------------------------


def _marker(cfg: CorpusConfig, audio_dir: Path) -> Dict:
    return {"version": CORPUS_VERSION, **dataclasses.asdict(cfg), "audio_dir": str(audio_dir)}


def is_complete(out_dir: Path, cfg: CorpusConfig, audio_dir: Path) -> bool:
    """True when ``out_dir`` holds a finished corpus made with the same arguments."""
    try:
        marker = json.loads((out_dir / ".done").read_text())
        sets = marker.pop("sets", SETS)
        if marker != _marker(cfg, audio_dir):
            return False
        for set_name in sets:
            wav_scp = read_scp(out_dir / set_name / "wav.scp")
            if not all(Path(p).is_file() for p in wav_scp.values()):
                return False
    except (OSError, ValueError, DataDirError):
        return False
    return True


def write_data_dir(path: Path, jobs: List[Job], params: Dict[str, Dict]) -> None:
    """Write one Kaldi data directory (atomically) for ``jobs``."""
    data = DataDir(
        wav_scp={j.utt_id: j.wav_path for j in jobs},
        text={j.utt_id: j.text for j in jobs},
        utt2spk={j.utt_id: params[j.utt_id]["speaker"] for j in jobs},
    )
    with atomic_dir(path) as tmp:
        data.write(tmp)
        synth = {j.utt_id: params[j.utt_id] for j in sorted(jobs, key=lambda j: j.utt_id)}
        (tmp / "utt2synth.json").write_text(json.dumps(synth, indent=1, sort_keys=True) + "\n")


def synthesize_corpus(out_dir: Path, cfg: CorpusConfig, audio_dir: Optional[Path] = None, nj: int = 2) -> bool:
    """Build the corpus in ``out_dir``; returns False when it was already complete."""
    cfg.check()
    if nj < 1:
        raise ValueError(f"--nj must be at least 1, got {nj}")
    out_dir = Path(out_dir).resolve()
    audio_dir = Path(audio_dir).resolve() if audio_dir is not None else out_dir / "audio"
    if is_complete(out_dir, cfg, audio_dir):
        logging.info("%s is complete for these arguments; nothing to do", out_dir)
        return False
    espeak_binary()  # fail before any work when espeak-ng is missing
    start = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".done").unlink(missing_ok=True)

    texts = make_texts(cfg)
    check_entity_coverage(cfg, texts.by_set["test_target"], texts.passages)
    plan = {k: v for k, v in plan_jobs(cfg, texts, audio_dir).items() if v}
    for set_name in SETS:
        if set_name not in plan:
            logging.info("no utterances for %s; not writing it", set_name)
            # An earlier run's copy would look like part of this corpus.
            shutil.rmtree(out_dir / set_name, ignore_errors=True)
            shutil.rmtree(audio_dir / set_name, ignore_errors=True)
    total = sum(len(v) for v in plan.values())
    logging.info("synthesising %d utterances with %d processes into %s", total, nj, audio_dir)

    with contextlib.ExitStack() as stack:
        # Audio goes to temporary folders that replace audio_dir/<set> only when complete.
        tmp_dirs = {s: stack.enter_context(atomic_dir(audio_dir / s)) for s in plan}
        work = [(job, str(tmp_dirs[s] / Path(job.wav_path).name)) for s, jobs in plan.items() for job in jobs]
        params = synthesize_jobs(work, nj)
    synth_time = time.time() - start

    for set_name, jobs in plan.items():
        write_data_dir(out_dir / set_name, jobs, params)
    local = out_dir / "local"
    atomic_write_text(local / "train_text.txt", "".join(s + "\n" for s in texts.train_text))
    atomic_write_text(local / "target_text.txt", "".join(s + "\n" for s in texts.target_text))
    atomic_write_text(
        local / "passages.jsonl",
        "".join(json.dumps(p, sort_keys=True) + "\n" for p in texts.passages),
    )
    atomic_write_text(
        out_dir / ".done",
        json.dumps({**_marker(cfg, audio_dir), "sets": sorted(plan)}, indent=1) + "\n",
    )
    logging.info(
        "wrote %d utterances (%s) to %s in %.1fs (%.0f utt/s)",
        total,
        ", ".join(f"{s}: {len(j)}" for s, j in plan.items()),
        out_dir,
        synth_time,
        total / max(synth_time, 1e-9),
    )
    return True
