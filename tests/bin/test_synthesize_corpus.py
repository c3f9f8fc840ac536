"""End to end: the synthetic demo corpus CLI on a tiny corpus."""

import hashlib
import json
import re

import pytest
import soundfile

from espnet_llm_plugin.bin.synthesize_corpus import get_parser, main
from espnet_llm_plugin.corpus.synthetic_corpus import CorpusConfig, is_complete, make_texts, synthesize_corpus
from espnet_llm_plugin.fileio.kaldi_data import load_data_dir

TINY = dict(
    num_train=8,
    num_dev=3,
    num_test=3,
    num_target_test=4,
    num_noise_train=2,
    num_noise_dev=1,
    num_noise_test=2,
    num_passages=30,
    num_target_text=40,
    num_extra_train_text=10,
)
TINY_ARGS = [f"--{k}={v}" for k, v in TINY.items()]
UTT_ID = re.compile(r"^[a-z0-9_]+-(train|dev|test|test_target|test_noise|dev_target|target_memory)-\d{5}$")


def _digest(root):
    """Hash of every file under ``root`` (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_help_describes_the_corpus(capsys):
    with pytest.raises(SystemExit) as e:
        get_parser().parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "test_target" in out and "--num_noise_test" in out and "--audio_dir" in out


def test_text_splits_do_not_overlap():
    texts = make_texts(
        CorpusConfig(
            num_train=300,
            num_dev=50,
            num_test=50,
            num_target_test=60,
            num_passages=40,
            num_target_text=500,
            num_extra_train_text=200,
        )
    )
    train, dev, test = (set(texts.by_set[s]) for s in ("train", "dev", "test"))
    assert len(train) == 300 and len(dev) == 50 and len(test) == 50
    assert not (train & dev or train & test or dev & test)
    lm = set(texts.train_text)
    assert train <= lm and len(lm) == 500 and not lm & (dev | test)
    target = set(texts.by_set["test_target"])
    assert len(target) == 60 and len(texts.target_text) == 500 and len(texts.passages) == 40
    assert not target & set(texts.target_text)
    assert not target & {s for p in texts.passages for s in p["sentences"]}
    # Without the optional sets they are empty.
    assert texts.by_set["dev_target"] == [] and texts.by_set["target_memory"] == []


def test_target_dev_and_memory_sets():
    sizes = dict(num_target_test=60, num_passages=40, num_target_text=500)
    plain = make_texts(CorpusConfig(**sizes))
    texts = make_texts(CorpusConfig(**sizes, num_target_dev=30, num_target_memory=100))
    # Adding them leaves every other set as it was (old results stay comparable).
    for name in ("train", "dev", "test", "test_target"):
        assert texts.by_set[name] == plain.by_set[name], name
    assert texts.passages == plain.passages and texts.train_text == plain.train_text
    test, dev = set(texts.by_set["test_target"]), set(texts.by_set["dev_target"])
    memory = texts.by_set["target_memory"]
    assert len(dev) == 30 and not dev & test
    assert not dev & {s for p in texts.passages for s in p["sentences"]}
    # The memory speaks the first sentences of the target text, never a test or dev sentence.
    assert memory == texts.target_text[:100] and len(texts.target_text) == 500
    assert not set(texts.target_text) & (test | dev)


def test_memory_larger_than_target_text_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="--num_target_memory .* cannot exceed --num_target_text"):
        main([str(tmp_path / "c"), "--num_target_text=10", "--num_target_memory=11"])


@pytest.mark.espeak
def test_cli_end_to_end(tmp_path, caplog):
    out = tmp_path / "corpus"
    main([str(out), "--seed=5", "--nj=2", *TINY_ARGS, "--num_target_dev=2", "--num_target_memory=3"])
    expected = {
        "dev_target": (2, 0),
        "target_memory": (3, 0),
        "train": (TINY["num_train"], TINY["num_noise_train"]),
        "dev": (TINY["num_dev"], TINY["num_noise_dev"]),
        "test": (TINY["num_test"], 0),
        "test_target": (TINY["num_target_test"], 0),
        "test_noise": (0, TINY["num_noise_test"]),
    }
    for set_name, (n_speech, n_noise) in expected.items():
        data = load_data_dir(out / set_name)
        assert len(data.wav_scp) == n_speech + n_noise, set_name
        assert sum(t == "" for t in data.text.values()) == n_noise, set_name
        for utt, path in data.wav_scp.items():
            assert UTT_ID.match(utt) and f"-{set_name}-" in utt, utt
            assert utt.startswith(data.utt2spk[utt] + "-")
            assert path.startswith(str((out / "audio" / set_name).resolve()))
            info = soundfile.info(path)
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            assert 0.5 < info.duration < 10
            assert (data.text[utt] == "") == (data.utt2spk[utt] == "noise")
        # Kaldi order: sorting by utterance also sorts by speaker.
        speakers = [data.utt2spk[u] for u in sorted(data.utt2spk)]
        assert speakers == sorted(speakers)
        spk2utt = (out / set_name / "spk2utt").read_text().split("\n")
        assert sum(len(line.split()) - 1 for line in spk2utt if line) == len(data.wav_scp)
        synth = json.loads((out / set_name / "utt2synth.json").read_text())
        assert set(synth) == set(data.wav_scp)
        for utt, params in synth.items():
            assert params["speaker"] == data.utt2spk[utt]
            assert ("snr_db" in params) == (data.text[utt] != "")
    local = out / "local"
    assert (
        len(local.joinpath("train_text.txt").read_text().splitlines())
        == TINY["num_train"] + TINY["num_extra_train_text"]
    )
    assert len(local.joinpath("target_text.txt").read_text().splitlines()) == TINY["num_target_text"]
    passages = [json.loads(line) for line in local.joinpath("passages.jsonl").read_text().splitlines()]
    assert len(passages) == TINY["num_passages"]
    # Every rare entity of a test_target sentence appears in some passage.
    covered = {e for p in passages for e in p["entities"]}
    target_text = load_data_dir(out / "test_target").text
    target_words = {w for t in target_text.values() for w in t.split()}
    from espnet_llm_plugin.corpus.sentence_grammar import build_world

    assert target_words & set(build_world(5).rare_entities()) <= covered
    assert not list(out.glob(".*.tmp")) and not list((out / "audio").glob(".*.tmp"))

    # Re-running with the same arguments does nothing.
    before = _digest(out)
    cfg = CorpusConfig(seed=5, **TINY, num_target_dev=2, num_target_memory=3)
    assert is_complete(out.resolve(), cfg, (out / "audio").resolve())
    assert synthesize_corpus(out, cfg, nj=2) is False
    assert _digest(out) == before

    # A lost audio file makes the corpus incomplete; the next run rebuilds it, identically,
    # with one process instead of two.
    lost = sorted((out / "audio" / "test").iterdir())[0]
    lost.unlink()
    assert not is_complete(out.resolve(), cfg, (out / "audio").resolve())
    assert synthesize_corpus(out, cfg, nj=1) is True
    assert _digest(out) == before

    # Other arguments: redone; a set that is now empty disappears.
    main([str(out), "--seed=6", "--nj=2", *TINY_ARGS, "--num_noise_test=0", "--num_target_dev=2"])
    assert json.loads((out / ".done").read_text())["seed"] == 6
    assert _digest(out) != before
    for gone in ("test_noise", "target_memory"):
        assert not (out / gone).exists() and not (out / "audio" / gone).exists()
    assert load_data_dir(out / "test_target").text != target_text


def test_missing_espeak_fails_before_work(tmp_path, monkeypatch, capsys):
    from espnet_llm_plugin.corpus import espeak_synth

    monkeypatch.setattr(espeak_synth.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install espeak-ng"):
        main([str(tmp_path / "c"), *TINY_ARGS])
    assert not (tmp_path / "c" / "train").exists()


def test_negative_count_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="--num_dev must not be negative"):
        main([str(tmp_path / "c"), "--num_dev=-1"])
