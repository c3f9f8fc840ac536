"""AN4 preparation on a small fake corpus in the official layout (real SPHERE files)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.corpus import release
from espnet_llm_plugin.corpus.an4 import (
    AN4DownloadError,
    AN4Error,
    download_an4,
    find_an4_root,
    parse_transcription,
    prepare_an4,
    select_dev_speakers,
)
from espnet_llm_plugin.fileio.audio import read_audio
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir

# split -> speaker -> [(file id, words)]
TRAIN = {
    "fash": [("an251-fash-b", "RUBOUT G M E F THREE NINE"), ("cen5-fash-b", "P I T T S B U R G H")],
    "fbbh": [("an86-fbbh-b", "YES"), ("cen1-fbbh-b", "B B H")],
    "mblw": [("an196-mblw-b", "ENTER SIX TWO"), ("cen3-mblw-b", "NO")],
}
TEST = {"fcaw": [("an406-fcaw-b", "RUBOUT T W"), ("cen2-fcaw-b", "ONE TWO")]}


def _sine(n: int, freq: float) -> np.ndarray:
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_fake_an4(parent: Path) -> Path:
    """``parent/an4`` in the layout of an4_sphere.tar.gz; returns ``parent``."""
    root = parent / "an4"
    (root / "etc").mkdir(parents=True)
    for split, wav_dir, corpus in (("train", "an4_clstk", TRAIN), ("test", "an4test_clstk", TEST)):
        lines, fileids = [], []
        for i, (spk, utts) in enumerate(corpus.items()):
            for j, (file_id, words) in enumerate(utts):
                lines.append(f"<s> {words} </s> ({file_id})")
                fileids.append(f"{wav_dir}/{spk}/{file_id}")
                sph = root / "wav" / wav_dir / spk / f"{file_id}.sph"
                sph.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(sph, _sine(1600 + 160 * j, 200 + 100 * i), 16000, format="NIST", subtype="PCM_16")
        (root / "etc" / f"an4_{split}.transcription").write_text("\n".join(lines) + "\n")
        (root / "etc" / f"an4_{split}.fileids").write_text("\n".join(fileids) + "\n")
    return parent


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_fake_an4(tmp_path / "db")


def _utt(file_id: str) -> str:
    pre, spk, suf = file_id.split("-")
    return f"{spk}-{pre}-{suf}"


def _check_data(data: Path, dev_speakers=("fbbh",)) -> None:
    dirs = {name: load_data_dir(data / name) for name in ("train", "dev", "test")}
    spk = {name: set(d.utt2spk.values()) for name, d in dirs.items()}
    assert spk["dev"] == set(dev_speakers)
    assert spk["train"] == set(TRAIN) - set(dev_speakers)
    assert spk["test"] == set(TEST)
    assert not spk["train"] & spk["dev"]
    expected_text = {_utt(f): w for utts in TRAIN.values() for f, w in utts}
    expected_text.update({_utt(f): w for utts in TEST.values() for f, w in utts})
    for name, d in dirs.items():
        assert d.utt_ids == sorted(d.wav_scp)
        for utt in d.utt_ids:
            assert d.text[utt] == expected_text[utt]
            assert d.utt2spk[utt] == utt.split("-")[0]
            path = Path(d.wav_scp[utt])
            assert path.is_absolute() and path.suffix == ".sph"
            wav, sr = read_audio(d.wav_scp[utt], utt)
            assert sr == 16000 and len(wav) >= 1600 and np.abs(wav).max() > 0.2
        assert (data / name / "spk2utt").is_file()
    spk2utt = (data / "train" / "spk2utt").read_text().splitlines()
    assert spk2utt[0] == "fash fash-an251-b fash-cen5-b"
    assert (data / "test" / "text").read_text().splitlines()[0] == "fcaw-an406-b RUBOUT T W"
    assert sorted(p.name for p in data.iterdir()) == ["dev", "test", "train"]  # no temp left


def test_prepare_function(corpus, tmp_path):
    counts = prepare_an4(corpus, tmp_path / "data", dev_ratio=0.3)
    assert counts == {"train": 4, "dev": 2, "test": 2}
    _check_data(tmp_path / "data")
    # the an4/ directory itself is accepted too, and the result is identical
    prepare_an4(corpus / "an4", tmp_path / "data2", dev_ratio=0.3)
    for name in ("train", "dev", "test"):
        for f in ("wav.scp", "text", "utt2spk", "spk2utt"):
            assert (tmp_path / "data" / name / f).read_bytes() == (tmp_path / "data2" / name / f).read_bytes()


def test_cli(corpus, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "espnet_llm_plugin.bin.prepare_an4",
        "--an4_root",
        str(corpus),
        "--data_dir",
        str(tmp_path / "data"),
        "--dev_speakers",
        "mblw",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_data(tmp_path / "data", dev_speakers=("mblw",))
    help_ = subprocess.run(cmd[:3] + ["--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "AN4" in help_.stdout and "--download" in help_.stdout
    bad = subprocess.run(
        cmd[:3] + ["--an4_root", str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode != 0
    assert "prepare_an4: error:" in bad.stderr and "an4_sphere.tar.gz" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_dev_selection_deterministic():
    speakers = [f"f{i:03d}" for i in range(30)] + [f"m{i:03d}" for i in range(44)]
    a = select_dev_speakers(list(reversed(speakers)), 0.1)
    assert a == select_dev_speakers(speakers, 0.1)
    assert len(a) == 7 and any(s[0] == "f" for s in a) and any(s[0] == "m" for s in a)
    assert select_dev_speakers(["a", "b"], 0.01) == ["b"]
    with pytest.raises(AN4Error, match="leaves none"):
        select_dev_speakers(["a"], 0.5)
    with pytest.raises(AN4Error, match="zzz"):
        select_dev_speakers(["a", "b"], dev_speakers=["zzz"])


def test_missing_etc_file(corpus, tmp_path):
    (corpus / "an4" / "etc" / "an4_test.transcription").unlink()
    with pytest.raises(AN4Error, match=r"an4_test\.transcription is missing.*an4_sphere\.tar\.gz"):
        prepare_an4(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    with pytest.raises(AN4Error, match="not a directory"):
        find_an4_root(tmp_path / "nowhere")


def test_line_without_id(corpus, tmp_path):
    trans = corpus / "an4" / "etc" / "an4_train.transcription"
    lines = trans.read_text().splitlines()
    lines.insert(2, "<s> HELLO WORLD </s>")
    trans.write_text("\n".join(lines) + "\n")
    with pytest.raises(AN4Error, match=rf"{trans}:3: expected"):
        prepare_an4(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    trans.write_text("<s> YES </s> (an1-fash)\n")
    with pytest.raises(AN4Error, match=r":1: utterance id 'an1-fash'"):
        parse_transcription(trans)


def test_transcription_without_sentence_marks(tmp_path):
    trans = tmp_path / "x.transcription"
    trans.write_text("TWO  FOUR (an1-mabc-b)\n\n<s> </s> (an2-mabc-b)\n")
    assert parse_transcription(trans) == [("an1-mabc-b", "TWO FOUR", 1), ("an2-mabc-b", "", 3)]
    trans.write_text("<s> A </s> (an1-mabc-b)\n<s> B </s> (an1-mabc-b)\n")
    with pytest.raises(AN4Error, match=":2: utterance id 'an1-mabc-b' already on line 1"):
        parse_transcription(trans)


def test_missing_sph(corpus, tmp_path):
    sph = corpus / "an4" / "wav" / "an4_clstk" / "mblw" / "cen3-mblw-b.sph"
    sph.unlink()
    with pytest.raises(AN4Error, match=r"utterance 'mblw-cen3-b'.*cen3-mblw-b\.sph is missing"):
        prepare_an4(corpus, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_unreadable_sph(corpus, tmp_path):
    sph = corpus / "an4" / "wav" / "an4test_clstk" / "fcaw" / "cen2-fcaw-b.sph"
    sph.write_bytes(b"NIST_1A\n   1024\nsample_coding -s26 pcm,embedded-shorten-v2.00\n")
    with pytest.raises(AN4Error, match=r"utterance 'fcaw-cen2-b'.*--sph2pipe"):
        prepare_an4(corpus, tmp_path / "data")


def test_existing_output_replaced(corpus, tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "stale").write_text("x")
    prepare_an4(corpus, data, dev_speakers=["fbbh"])
    assert not (data / "train" / "stale").exists()
    _check_data(data)


def _archive_of(corpus: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(corpus / "an4", arcname="an4")
    return path


def test_download_unreachable(tmp_path):
    dl = tmp_path / "downloads"
    url = (tmp_path / "nonexistent" / "an4_sphere.tar.gz").as_uri()
    with pytest.raises(AN4DownloadError) as err:
        download_an4(dl, url=url)
    msg = str(err.value)
    assert url in msg and "AN4=" in msg and "db.sh" in msg
    assert list(dl.iterdir()) == []  # no partial archive, no temp dir

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.prepare_an4",
            "--download",
            "true",
            "--download_dir",
            str(dl),
            "--url",
            url,
            "--data_dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "prepare_an4: error: could not download" in proc.stderr and url in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(dl.iterdir()) == [] and not (tmp_path / "data").exists()


def test_download_interrupted_leaves_nothing(tmp_path, monkeypatch):
    class Resp(io.BytesIO):
        headers = {"Content-Length": "1000"}

    monkeypatch.setattr(release.urllib.request, "urlopen", lambda url, timeout: Resp(b"x" * 10))
    with pytest.raises(AN4DownloadError, match="after 10 of 1000 bytes"):
        download_an4(tmp_path / "dl", url="http://example.invalid/an4_sphere.tar.gz")
    assert list((tmp_path / "dl").iterdir()) == []


def test_download_and_extract(corpus, tmp_path):
    src = _archive_of(corpus, tmp_path / "src.tar.gz")
    dl = tmp_path / "downloads"
    root = download_an4(dl, url=src.as_uri())
    assert root == (dl / "an4").resolve()
    assert sorted(p.name for p in dl.iterdir()) == ["an4", "an4_sphere.tar.gz"]
    # already extracted: no download (the URL is gone now), same root
    src.unlink()
    assert download_an4(dl, url=src.as_uri()) == root
    # archive present but not extracted: extracted again without downloading
    shutil.rmtree(dl / "an4")
    assert download_an4(dl, url=src.as_uri()) == root
    # the CLI end to end, downloading into a fresh directory
    src = _archive_of(corpus, tmp_path / "src2.tar.gz")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.prepare_an4",
            "--download",
            "true",
            "--download_dir",
            str(tmp_path / "dl2"),
            "--url",
            src.as_uri(),
            "--data_dir",
            str(tmp_path / "data"),
            "--dev_speakers",
            "fbbh",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    _check_data(tmp_path / "data")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_data_sh(corpus, data_sh_recipe):
    recipe = data_sh_recipe("an4", "AN4")
    recipe.check_needs_db_var()

    proc = recipe.run("", "--bogus", "1")
    assert proc.returncode != 0 and "unknown option: --bogus" in proc.stderr

    _check_data(recipe.prepare(corpus, "--dev_speakers", "fbbh"))
