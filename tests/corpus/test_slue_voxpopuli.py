"""SLUE-VoxPopuli preparation on a small fake corpus in the official layout (real OGG/Vorbis)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.corpus.slue_voxpopuli import (
    SLUE_VOXPOPULI_URL,
    SlueVoxPopuliDownloadError,
    SlueVoxPopuliError,
    download_slue_voxpopuli,
    normalize_transcript,
    prepare_slue_voxpopuli,
    select_valid_speakers,
)
from espnet_llm_plugin.fileio.audio import read_audio
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir
from espnet_llm_plugin.retrieval.passage_retrieval import read_passages

HEADER = "id\traw_text\tnormalized_text\tspeaker_id\tsplit\traw_ner\tnormalized_ner"

# split -> [(id, raw, normalized, speaker)]
ROWS = {
    "fine-tune": [
        (
            "20100118-0900-PLENARY-3-en_20100118-18:06:49_4",
            "Madam President, thank you.",
            "madam president thank you.",
            "1234",
        ),
        ("20100118-0900-PLENARY-3-en_20100118-18:07:10_5", "We need a solution!", "we need a solution!", "1234"),
        (
            "20120613-0900-PLENARY-9-en_20120613-14:01:02_1",
            "The Commission; however?",
            "the commission; however?",
            "5678",
        ),
        ("20130115-0900-PLENARY-5-en_20130115-10:00:00_2", "Yes.", "yes.", "9012"),
    ],
    "dev": [("20140101-0900-PLENARY-1-en_20140101-10:00:00_0", "I agree.", "i agree.", "4321")],
}


def make_fake_slue(parent: Path, with_test: bool = False) -> Path:
    root = parent / "slue-voxpopuli"
    root.mkdir(parents=True)
    rows = dict(ROWS)
    if with_test:
        rows["test"] = [("20150101-0900-PLENARY-2-en_20150101-10:00:00_0", "Thank you.", "thank you.", "777")]
    for split, items in rows.items():
        lines = [HEADER]
        (root / split).mkdir()
        for i, (rid, raw, norm, spk) in enumerate(items):
            lines.append(f"{rid}\t{raw}\t{norm}\t{spk}\t{split}\tNone\tNone")
            t = np.arange(1600 + 160 * i) / 16000
            soundfile.write(
                root / split / f"{rid}.ogg",
                (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32),
                16000,
                format="OGG",
                subtype="VORBIS",
            )
        (root / f"slue-voxpopuli_{split}.tsv").write_text("\n".join(lines) + "\n")
    # the official blind test manifest: ids only, audio present
    (root / "test").mkdir(exist_ok=True)
    (root / "slue-voxpopuli_test_blind.tsv").write_text("id\n20160101-0900-PLENARY-1-en_x_0\n")
    return parent


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_fake_slue(tmp_path / "db")


def _check(data: Path, sets=("train", "valid", "dev")) -> None:
    assert sorted(p.name for p in data.iterdir()) == sorted(list(sets) + ["local"])
    dirs = {s: load_data_dir(data / s) for s in sets}
    assert set(dirs["valid"].utt2spk.values()) == {"5678"}
    assert set(dirs["train"].utt2spk.values()) == {"1234", "9012"}
    rid = ROWS["fine-tune"][0][0]
    assert dirs["train"].text[f"1234-{rid}"] == "madam president thank you"
    assert dirs["valid"].text == {f"5678-{ROWS['fine-tune'][2][0]}": "the commission however"}
    for d in dirs.values():
        for utt in d.utt_ids:
            assert d.wav_scp[utt].endswith(".ogg") and utt.startswith(d.utt2spk[utt] + "-")
            wav, sr = read_audio(d.wav_scp[utt], utt)
            assert sr == 16000 and len(wav) >= 1600
    passages = read_passages(data / "local" / "passages.jsonl")
    assert [p.id for p in passages] == sorted(dirs["train"].utt_ids)
    assert passages[0].text == "madam president thank you"


def test_normalize():
    assert normalize_transcript("the commission;  however? yes. no!") == "the commission however yes no"
    assert select_valid_speakers(["a", "b", "c", "d"], 0.3) == ["c"]
    with pytest.raises(SlueVoxPopuliError, match="leaves none"):
        select_valid_speakers(["a"], 0.5)


def test_prepare(corpus, tmp_path):
    counts = prepare_slue_voxpopuli(corpus, tmp_path / "data", valid_ratio=0.3)
    assert counts == {"train": 3, "valid": 1, "dev": 1}
    _check(tmp_path / "data")
    shutil.rmtree(corpus)
    make_fake_slue(corpus, with_test=True)
    counts = prepare_slue_voxpopuli(corpus / "slue-voxpopuli", tmp_path / "data2", valid_ratio=0.3)
    assert counts["test"] == 1
    _check(tmp_path / "data2", sets=("train", "valid", "dev", "test"))


def test_missing_and_partial(corpus, tmp_path):
    with pytest.raises(SlueVoxPopuliError, match=r"not a directory.*SLUE_VOXPOPULI="):
        prepare_slue_voxpopuli(tmp_path / "nowhere", tmp_path / "data")
    root = corpus / "slue-voxpopuli"
    (root / "slue-voxpopuli_dev.tsv").unlink()
    with pytest.raises(SlueVoxPopuliError, match=r"slue-voxpopuli_dev\.tsv is missing.*SLUE_VOXPOPULI="):
        prepare_slue_voxpopuli(corpus, tmp_path / "data")
    shutil.rmtree(corpus)
    make_fake_slue(corpus)
    rid = ROWS["fine-tune"][1][0]
    (root / "fine-tune" / f"{rid}.ogg").unlink()
    with pytest.raises(SlueVoxPopuliError, match=rf"utterance '{rid}' .*fine-tune\.tsv:3\).*\.ogg is missing"):
        prepare_slue_voxpopuli(corpus, tmp_path / "data", valid_ratio=0.3)
    shutil.rmtree(root / "dev")
    with pytest.raises(SlueVoxPopuliError, match=r"audio directory .*dev is missing"):
        prepare_slue_voxpopuli(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_bad_manifest(corpus, tmp_path):
    tsv = corpus / "slue-voxpopuli" / "slue-voxpopuli_fine-tune.tsv"
    tsv.write_text("id\traw_text\n")
    with pytest.raises(SlueVoxPopuliError, match=r"fine-tune\.tsv: missing column\(s\) normalized_text, speaker_id"):
        prepare_slue_voxpopuli(corpus, tmp_path / "data")
    rid = ROWS["fine-tune"][0][0]
    tsv.write_text(f"{HEADER}\n{rid}\ta\ta\t1\tx\tNone\tNone\n{rid}\ta\ta\t1\tx\tNone\tNone\n")
    with pytest.raises(SlueVoxPopuliError, match=rf":3: id '{rid}' already on line 2"):
        prepare_slue_voxpopuli(corpus, tmp_path / "data")


def test_cli_and_download(corpus, tmp_path):
    cmd = [sys.executable, "-m", "espnet_llm_plugin.bin.prepare_slue_voxpopuli"]
    proc = subprocess.run(
        cmd + ["--slue_root", str(corpus), "--data_dir", str(tmp_path / "data"), "--valid_ratio", "0.3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    _check(tmp_path / "data")
    # unreachable URL: the error names it, nothing partial is left
    url = (tmp_path / "nonexistent" / "slue-voxpopuli_blind.tar.gz").as_uri()
    dl = tmp_path / "dl"
    with pytest.raises(SlueVoxPopuliDownloadError) as err:
        download_slue_voxpopuli(dl, url=url)
    assert url in str(err.value) and "SLUE_VOXPOPULI=" in str(err.value)
    assert list(dl.iterdir()) == []
    assert SLUE_VOXPOPULI_URL.endswith("/slue-voxpopuli_blind.tar.gz")
    bad = subprocess.run(
        cmd + ["--download", "true", "--download_dir", str(dl), "--url", url, "--data_dir", str(tmp_path / "data3")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "could not download" in bad.stderr and url in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "data3").exists()
    # a good archive: downloaded, extracted, prepared
    src = tmp_path / "src.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        tar.add(corpus / "slue-voxpopuli", arcname="slue-voxpopuli")
    proc = subprocess.run(
        cmd
        + [
            "--download",
            "true",
            "--download_dir",
            str(dl),
            "--url",
            src.as_uri(),
            "--data_dir",
            str(tmp_path / "data4"),
            "--valid_ratio",
            "0.3",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dl.iterdir()) == ["slue-voxpopuli", "slue-voxpopuli_blind.tar.gz"]
    _check(tmp_path / "data4")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_data_sh(corpus, data_sh_recipe):
    recipe = data_sh_recipe("slue_voxpopuli", "SLUE_VOXPOPULI")
    recipe.check_needs_db_var()
    _check(recipe.prepare(corpus, "--valid_ratio", "0.3"))
