"""LibriSpeech preparation on a small fake corpus in the official OpenSLR 12 layout (real FLAC)."""

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

from espnet_llm_plugin.corpus.librispeech import (
    EVAL_SUBSETS,
    TRAIN_SUBSETS,
    LibriSpeechDownloadError,
    LibriSpeechError,
    download_librispeech,
    find_librispeech_root,
    parse_trans,
    prepare_librispeech,
    subset_url,
)
from espnet_llm_plugin.fileio.audio import read_audio
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir

REPO = Path(__file__).resolve().parents[2]
EVAL_DIRS = ["dev_clean", "dev_other", "test_clean", "test_other"]


def _speaker(subset: str) -> str:
    return str(100 + (TRAIN_SUBSETS + EVAL_SUBSETS).index(subset))


def make_subset(parent: Path, subset: str, n_chapters: int = 2, n_utts: int = 2) -> None:
    """``parent/LibriSpeech/<subset>/<spk>/<chapter>/`` with a .trans.txt and FLAC files."""
    spk = _speaker(subset)
    for c in range(n_chapters):
        chapter = f"{spk}{c}"
        d = parent / "LibriSpeech" / subset / spk / chapter
        d.mkdir(parents=True)
        lines = []
        for u in range(n_utts):
            utt = f"{spk}-{chapter}-{u:04d}"
            t = np.arange(1600 + 160 * u) / 16000
            soundfile.write(
                d / f"{utt}.flac",
                (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32),
                16000,
                format="FLAC",
                subtype="PCM_16",
            )
            lines.append(f"{utt} {subset.upper().replace('-', ' ')} CHAPTER {c} UTT {u}")
        (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")


def make_fake_librispeech(parent: Path, subsets=TRAIN_SUBSETS + EVAL_SUBSETS) -> Path:
    for s in subsets:
        make_subset(parent, s)
    (parent / "LibriSpeech" / "SPEAKERS.TXT").write_text(";ID |SEX| SUBSET\n")
    return parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_fake_librispeech(tmp_path_factory.mktemp("db"))


def _check(data: Path, train_name: str, train_subsets) -> None:
    names = sorted(p.name for p in data.iterdir())
    assert names == sorted([train_name] + EVAL_DIRS)  # no temp dirs left
    train = load_data_dir(data / train_name)
    assert set(train.utt2spk.values()) == {_speaker(s) for s in train_subsets}
    assert len(train.utt_ids) == 4 * len(train_subsets)
    for name in [train_name] + EVAL_DIRS:
        d = load_data_dir(data / name)
        assert d.utt_ids == sorted(d.wav_scp)
        for utt in d.utt_ids:
            assert d.utt2spk[utt] == utt.split("-")[0]
            assert Path(d.wav_scp[utt]).is_absolute() and d.wav_scp[utt].endswith(f"{utt}.flac")
        wav, sr = read_audio(d.wav_scp[d.utt_ids[0]], d.utt_ids[0])
        assert sr == 16000 and len(wav) == 1600 and np.abs(wav).max() > 0.2
    spk = _speaker("test-clean")
    assert (data / "test_clean" / "text").read_text().splitlines()[0] == f"{spk}-{spk}0-0000 TEST CLEAN CHAPTER 0 UTT 0"


def test_prepare_100_and_960(corpus, tmp_path):
    counts = prepare_librispeech(corpus, tmp_path / "d100")
    assert counts == {"train_clean_100": 4, **{n: 4 for n in EVAL_DIRS}}
    _check(tmp_path / "d100", "train_clean_100", ["train-clean-100"])
    assert find_librispeech_root(corpus, ["dev-clean"]) == (corpus / "LibriSpeech").resolve()
    assert find_librispeech_root(corpus / "LibriSpeech", ["dev-clean"]) == (corpus / "LibriSpeech").resolve()
    counts = prepare_librispeech(corpus / "LibriSpeech", tmp_path / "d960", train_hours="960")
    assert counts["train_960"] == 12
    _check(tmp_path / "d960", "train_960", TRAIN_SUBSETS)


def test_missing_and_partial_corpus(tmp_path):
    with pytest.raises(LibriSpeechError, match=r"not a directory.*LIBRISPEECH="):
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "data")
    make_fake_librispeech(tmp_path / "db", subsets=("train-clean-100", "dev-clean", "dev-other", "test-clean"))
    with pytest.raises(LibriSpeechError, match=r"test-other is missing.*test-other\.tar\.gz.*LIBRISPEECH="):
        prepare_librispeech(tmp_path / "db", tmp_path / "data")
    # 100 h complete, 960 h needs the other training subsets
    make_subset(tmp_path / "db", "test-other")
    with pytest.raises(LibriSpeechError, match="train-clean-360 is missing"):
        prepare_librispeech(tmp_path / "db", tmp_path / "data", train_hours="960")
    # an audio file missing
    flac = next((tmp_path / "db" / "LibriSpeech" / "dev-other").rglob("*-0001.flac"))
    flac.unlink()
    with pytest.raises(LibriSpeechError, match=rf"utterance '{flac.stem}'.*is missing; .*dev-other\.tar"):
        prepare_librispeech(tmp_path / "db", tmp_path / "data")
    for f in (tmp_path / "db" / "LibriSpeech" / "dev-other").rglob("*-0000.flac"):
        f.unlink()
    with pytest.raises(LibriSpeechError, match=r"is missing \(2 more utterances"):
        prepare_librispeech(tmp_path / "db", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_bad_transcript(tmp_path):
    make_subset(tmp_path, "dev-clean", n_chapters=1)
    trans = next((tmp_path / "LibriSpeech").rglob("*.trans.txt"))
    prefix = trans.name[: -len(".trans.txt")]
    assert [u for u, _, _ in parse_trans(trans)] == [f"{prefix}-0000", f"{prefix}-0001"]
    trans.write_text(f"{prefix}-0000 HELLO\n999-1-0001 WRONG CHAPTER\n")
    with pytest.raises(LibriSpeechError, match=r"trans\.txt:2: expected"):
        parse_trans(trans)
    trans.write_text(f"{prefix}-0000 HELLO\n{prefix}-0000 AGAIN\n")
    with pytest.raises(LibriSpeechError, match="already on line 1"):
        parse_trans(trans)


def test_cli(corpus, tmp_path):
    cmd = [sys.executable, "-m", "espnet_llm_plugin.bin.prepare_librispeech"]
    proc = subprocess.run(
        cmd + ["--librispeech_root", str(corpus), "--data_dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    _check(tmp_path / "data", "train_clean_100", ["train-clean-100"])
    bad = subprocess.run(
        cmd + ["--librispeech_root", str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode != 0 and "prepare_librispeech: error:" in bad.stderr
    assert "LIBRISPEECH=" in bad.stderr and "Traceback" not in bad.stderr


def test_download_unreachable(tmp_path):
    dl = tmp_path / "downloads"
    base = (tmp_path / "nonexistent").as_uri()
    with pytest.raises(LibriSpeechDownloadError) as err:
        download_librispeech(dl, ["dev-clean"], base_url=base)
    assert subset_url("dev-clean", base) in str(err.value) and "LIBRISPEECH=" in str(err.value)
    assert list(dl.iterdir()) == []  # nothing partial
    assert subset_url("dev-clean") == "https://www.openslr.org/resources/12/dev-clean.tar.gz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.prepare_librispeech",
            "--download",
            "true",
            "--download_dir",
            str(dl),
            "--base_url",
            base,
            "--data_dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "could not download" in proc.stderr
    assert f"{base}/train-clean-100.tar.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()


def test_download_and_extract(corpus, tmp_path):
    src = tmp_path / "mirror"
    src.mkdir()
    for subset in ("train-clean-100",) + EVAL_SUBSETS:
        with tarfile.open(src / f"{subset}.tar.gz", "w:gz") as tar:
            tar.add(corpus / "LibriSpeech" / subset, arcname=f"LibriSpeech/{subset}")
            info = tarfile.TarInfo("LibriSpeech/README.TXT")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    dl = tmp_path / "dl"
    root = download_librispeech(dl, ["dev-clean", "test-clean"], base_url=src.as_uri())
    assert root == (dl / "LibriSpeech").resolve()
    assert sorted(p.name for p in root.iterdir()) == ["README.TXT", "dev-clean", "test-clean"]
    # already extracted: no download needed (the mirror is gone)
    shutil.move(src, tmp_path / "mirror2")
    assert download_librispeech(dl, ["dev-clean"], base_url=src.as_uri()) == root
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_llm_plugin.bin.prepare_librispeech",
            "--download",
            "true",
            "--download_dir",
            str(dl),
            "--librispeech_root",
            str(dl),
            "--base_url",
            (tmp_path / "mirror2").as_uri(),
            "--data_dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    _check(tmp_path / "data", "train_clean_100", ["train-clean-100"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_data_sh(corpus, data_sh_recipe):
    recipe = data_sh_recipe("librispeech", "LIBRISPEECH")
    recipe.check_needs_db_var()
    proc = recipe.run("", "--train_hours", "50")
    assert proc.returncode != 0 and "100 or 960" in proc.stderr
    _check(recipe.prepare(corpus, "--train_hours", "960"), "train_960", TRAIN_SUBSETS)


def _accepted(cls) -> set:
    import inspect

    params = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    return params


@pytest.mark.parametrize("config", ["llm_hubert_large_7b.yaml", "llm_xattn_hubert_large_7b.yaml"])
def test_paper_configs_use_valid_keys(config):
    """Every *_conf key of the paper-scale configs is an argument of the class it configures
    (the models themselves are 7B: built on GPU machines only)."""
    import yaml
    from espnet2.asr.espnet_model import ESPnetASRModel

    from espnet_llm_plugin.asr.adapter import Conv1dMlpAdapter
    from espnet_llm_plugin.asr.hf_speech_encoder import HfSpeechEncoder
    from espnet_llm_plugin.asr.llm_asr_model import LlmASRModel
    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
    from espnet_llm_plugin.asr.llm_xattn_decoder import LlmXattnDecoder

    cfg = yaml.safe_load((REPO / "egs2" / "spoken_squad" / "llm_asr1" / "conf" / "asr" / config).read_text())
    assert cfg["encoder"] == "hf_speech" and cfg["input_size"] == 1
    assert "model_path" not in cfg["encoder_conf"]  # comes from db.sh, never a machine path
    decoder = {"llm": LlmDecoder, "llm_xattn": LlmXattnDecoder}[cfg["decoder"]]
    for key, cls in (
        ("encoder_conf", HfSpeechEncoder),
        ("postencoder_conf", Conv1dMlpAdapter),
        ("decoder_conf", decoder),
    ):
        unknown = set(cfg[key]) - _accepted(cls)
        assert not unknown, f"{config}: {key} keys {unknown} are not {cls.__name__} arguments"
    assert not set(cfg["model_conf"]) - (_accepted(LlmASRModel) | _accepted(ESPnetASRModel))
    assert cfg["encoder_conf"]["lora_r"] == 8 and cfg["encoder_conf"]["lora_alpha"] == 16
    assert cfg["decoder_conf"]["lora_r"] == 16 and cfg["decoder_conf"]["lora_alpha"] == 16
