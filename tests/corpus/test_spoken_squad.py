"""Spoken-SQuAD preparation on a small fake corpus in the official layout (real 24 kHz WAV)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.corpus.spoken_squad import (
    AUDIO_URL,
    SpokenSquadDownloadError,
    SpokenSquadError,
    download_spoken_squad,
    prepare_spoken_squad,
    split_sentences,
)
from espnet_llm_plugin.fileio.audio import read_audio
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir
from espnet_llm_plugin.retrieval.passage_retrieval import read_gold, read_passages, read_utterance_documents

# split -> topics -> paragraphs (context); question ids are "<split>q<topic>_<paragraph>"
CONTEXTS = {
    "train": [
        [
            "Architecturally, the school has a Catholic character. Atop the Main Building is a statue.",
            "The university is in Indiana.",
        ],
        ["Beyonce was born in Houston. She rose to fame in the 1990s. Her debut came in 2003."],
        ["Montana is a state. It borders Canada.", "It has mountains!"],
    ],
    "test": [["Super Bowl 50 was an American football game. The Denver Broncos won it."]],
}


def _qid(split, t, p):
    return f"{split}q{t}_{p}"


def make_fake_spoken_squad(root: Path, drop_question=None, extra_wav=None) -> Path:
    """The four JSON files and Spoken-SQuAD_audio/{train_wav,dev_wav} under ``root``."""
    root.mkdir(parents=True)
    names = {
        "train": ("spoken_train-v1.1.json", "train-v1.1.json", "train_wav"),
        "test": ("spoken_test-v1.1.json", "dev-v1.1.json", "dev_wav"),
    }
    for split, topics in CONTEXTS.items():
        spoken_json, squad_json, wav_dir = names[split]
        original, spoken = {"data": [], "version": "1.1"}, {"data": []}
        (root / "Spoken-SQuAD_audio" / wav_dir).mkdir(parents=True)
        for t, paragraphs in enumerate(topics):
            o_pars, s_pars = [], []
            for p, context in enumerate(paragraphs):
                qa = {
                    "id": _qid(split, t, p),
                    "question": "What?",
                    "answers": [{"answer_start": 0, "text": context.split()[0]}],
                }
                o_pars.append({"context": context, "qas": [qa]})
                if _qid(split, t, p) != drop_question:
                    s_pars.append({"context": context.lower(), "qas": [qa]})
                for s, _ in enumerate(split_sentences(context)):
                    tt = np.arange(2400 + 240 * s) / 24000
                    soundfile.write(
                        root / "Spoken-SQuAD_audio" / wav_dir / f"{t}_{p}_{s}.wav",
                        (0.3 * np.sin(2 * np.pi * 250 * tt)).astype(np.float32),
                        24000,
                        subtype="PCM_16",
                    )
            original["data"].append({"title": f"T{t}", "paragraphs": o_pars})
            spoken["data"].append({"title": f"T{t}", "paragraphs": s_pars})
        (root / squad_json).write_text(json.dumps(original))
        (root / spoken_json).write_text(json.dumps(spoken))
    if extra_wav:
        soundfile.write(root / "Spoken-SQuAD_audio" / extra_wav, np.zeros(2400, np.float32), 24000)
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_fake_spoken_squad(tmp_path / "db")


def test_split_sentences():
    assert split_sentences('A b. C d! "E f?" G. 3 x') == ["A b.", "C d!", '"E f?"', "G.", "3 x"]
    assert split_sentences("Mr. smith went. to 2.5 km") == ["Mr. smith went. to 2.5 km"]
    assert split_sentences("  ") == []


def _check(data: Path) -> None:
    assert sorted(p.name for p in data.iterdir()) == ["local", "test", "train", "valid"]
    dirs = {s: load_data_dir(data / s) for s in ("train", "valid", "test")}
    # topic 1 (the middle of 3) is held out
    assert {u.split("-")[1] for u in dirs["valid"].utt_ids} == {"001"}
    assert {u.split("-")[1] for u in dirs["train"].utt_ids} == {"000", "002"}
    assert dirs["train"].text["tr-000-000-001"] == "Atop the Main Building is a statue."
    assert dirs["test"].text["te-000-000-000"] == "Super Bowl 50 was an American football game."
    assert dirs["valid"].utt2spk["tr-001-000-002"] == "tr-001-000"
    for d in dirs.values():
        for utt in d.utt_ids:
            assert utt.startswith(d.utt2spk[utt] + "-")
        wav, sr = read_audio(d.wav_scp[d.utt_ids[0]], d.utt_ids[0])
        assert sr == 24000 and len(wav) == 2400
    passages = {p.id: p.text for p in read_passages(data / "local" / "passages.jsonl")}
    assert passages["te-000-000"] == CONTEXTS["test"][0][0]
    docs = read_utterance_documents(data / "train" / "documents.jsonl")
    assert set(docs) == set(dirs["train"].utt_ids)
    assert [p.id for p in docs["tr-002-001-000"]] == ["tr-002-000", "tr-002-001"]
    test_docs = read_utterance_documents(data / "test" / "documents.jsonl")
    assert [p.id for p in test_docs["te-000-000-001"]] == ["te-000-000"]
    assert sorted(p.name for p in (data / "local").iterdir()) == ["passages.jsonl"]
    gold = read_gold(data / "train" / "gold_passages")
    assert gold["tr-002-001-000"] == {"tr-002-001"}
    return dirs


def test_prepare(corpus, tmp_path):
    counts = prepare_spoken_squad(corpus, tmp_path / "data", valid_ratio=0.3)
    assert counts == {"train": 6, "valid": 3, "test": 2}
    _check(tmp_path / "data")


def test_skips_paragraphs(tmp_path):
    # a paragraph whose questions Spoken-SQuAD dropped, and one with an extra wav file
    root = make_fake_spoken_squad(tmp_path / "db", drop_question=_qid("train", 0, 1), extra_wav="train_wav/2_1_1.wav")
    counts = prepare_spoken_squad(root, tmp_path / "data", valid_ratio=0.3)
    assert counts == {"train": 4, "valid": 3, "test": 2}
    ids = load_data_dir(tmp_path / "data" / "train").utt_ids
    assert not any(u.startswith(("tr-000-001", "tr-002-001")) for u in ids)


def test_missing_and_partial(corpus, tmp_path):
    with pytest.raises(SpokenSquadError, match=r"not a directory.*SPOKEN_SQUAD="):
        prepare_spoken_squad(tmp_path / "nowhere", tmp_path / "data")
    (corpus / "dev-v1.1.json").unlink()
    with pytest.raises(SpokenSquadError, match=r"dev-v1\.1\.json is missing.*SPOKEN_SQUAD="):
        prepare_spoken_squad(corpus, tmp_path / "data")
    shutil.rmtree(corpus)
    make_fake_spoken_squad(corpus)
    shutil.rmtree(corpus / "Spoken-SQuAD_audio" / "dev_wav")
    with pytest.raises(SpokenSquadError, match=r"audio directory .*dev_wav is missing"):
        prepare_spoken_squad(corpus, tmp_path / "data")
    (corpus / "Spoken-SQuAD_audio" / "dev_wav").mkdir()
    with pytest.raises(SpokenSquadError, match=r"no <topic>_<paragraph>_<sentence>\.wav files in .*dev_wav"):
        prepare_spoken_squad(corpus, tmp_path / "data")
    shutil.rmtree(corpus)
    make_fake_spoken_squad(corpus)
    (corpus / "spoken_test-v1.1.json").write_text('{"data": [')
    with pytest.raises(SpokenSquadError, match=r"spoken_test-v1\.1\.json: invalid JSON"):
        prepare_spoken_squad(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_download_unreachable(tmp_path):
    dl = tmp_path / "dl"
    base = (tmp_path / "nonexistent").as_uri()
    with pytest.raises(SpokenSquadDownloadError) as err:
        download_spoken_squad(dl, json_url=base, squad_url=base, audio_url=f"{base}/a.zip")
    assert f"{base}/spoken_train-v1.1.json" in str(err.value) and "SPOKEN_SQUAD" in str(err.value)
    assert list(dl.iterdir()) == []
    assert AUDIO_URL.endswith("/Spoken-SQuAD_audio.zip")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.prepare_spoken_squad",
            "--download",
            "true",
            "--download_dir",
            str(dl),
            "--json_url",
            base,
            "--squad_url",
            base,
            "--audio_url",
            f"{base}/a.zip",
            "--data_dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "could not download" in proc.stderr and base in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()


def test_download_and_extract(corpus, tmp_path, make_zip):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in ("spoken_train-v1.1.json", "spoken_test-v1.1.json", "train-v1.1.json", "dev-v1.1.json"):
        shutil.copy(corpus / f, mirror / f)
    inner = {}
    for w in ("train_wav", "dev_wav"):  # the release nests one zip per split
        files = {f"{w}/{p.name}": p.read_bytes() for p in (corpus / "Spoken-SQuAD_audio" / w).iterdir()}
        inner[f"Spoken-SQuAD_audio/{w}.zip"] = make_zip(tmp_path / f"{w}.zip", files).read_bytes()
    make_zip(mirror / "Spoken-SQuAD_audio.zip", inner)
    dl = tmp_path / "dl"
    cmd = [
        sys.executable,
        "-m",
        "espnet_llm_plugin.bin.prepare_spoken_squad",
        "--download",
        "true",
        "--download_dir",
        str(dl),
        "--json_url",
        mirror.as_uri(),
        "--squad_url",
        mirror.as_uri(),
        "--audio_url",
        (mirror / "Spoken-SQuAD_audio.zip").as_uri(),
        "--data_dir",
        str(tmp_path / "data"),
        "--valid_ratio",
        "0.3",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    _check(tmp_path / "data")
    assert sorted(p.name for p in (dl / "Spoken-SQuAD_audio").iterdir()) == ["dev_wav", "train_wav"]
    # everything there: no download needed (the mirror is gone)
    shutil.rmtree(mirror)
    assert (
        download_spoken_squad(dl, json_url=mirror.as_uri(), squad_url=mirror.as_uri(), audio_url=mirror.as_uri())
        == dl.resolve()
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_data_sh(corpus, data_sh_recipe):
    recipe = data_sh_recipe("spoken_squad", "SPOKEN_SQUAD")
    recipe.check_needs_db_var()
    _check(recipe.prepare(corpus, "--valid_ratio", "0.3"))
