"""build_datastore CLI: text memory, sharded build + merge == single build, resume, errors."""

import json

import numpy as np
import pytest
from tiny_models import save_tiny_llm

from espnet_llm_plugin.bin.build_datastore import main, shard_dir
from espnet_llm_plugin.retrieval.datastore import FaissDatastore


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return save_tiny_llm(
        tmp_path_factory.mktemp("lm"),
        ["<pad>", "<unk>", "<s>", "</s>"] + "the a cat dog sat on mat ran to home big red".split(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )


@pytest.fixture
def memory(tmp_path):
    p = tmp_path / "memory.txt"
    p.write_text("\n".join(["the cat sat on the mat", "the big dog ran home", "a red cat ran to the dog"] * 3) + "\n")
    return p


def args(lm_dir, memory, out, *extra):
    return [
        "--memory_text",
        str(memory),
        "--key_encoder",
        str(lm_dir),
        "--window",
        "5",
        "--stride",
        "3",
        "--device",
        "cpu",
        "--batch_size",
        "4",
        "--out_dir",
        str(out),
        *extra,
    ]


def test_single_build(lm_dir, memory, tmp_path):
    main(args(lm_dir, memory, tmp_path / "ds", "--metric", "ip"))
    ds = FaissDatastore.load(tmp_path / "ds")
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["metric"] == "ip" and m["info"]["build"]["window"] == [5] and m["info"]["build"]["stride"] == [3]
    # every next-token event of the corpus once: sum over lines of (tokens + bos + eos - 1)
    assert ds.count == 3 * ((6 + 1) + (5 + 1) + (7 + 1))


def test_kaldi_text_memory_is_its_transcripts(lm_dir, memory, tmp_path, caplog):
    """--memory_text_file alone: the same keys as the plain lines, no utterance id in them."""
    lines = memory.read_text().splitlines()
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("".join(f"utt{i:02d} {t}\n" for i, t in enumerate(lines)) + "utt99\n")
    (data / "wav.scp").write_text("".join(f"utt{i:02d} a.wav\n" for i in range(len(lines))))
    main(args(lm_dir, memory, tmp_path / "plain"))
    main(["--memory_text_file", str(data / "text"), *args(lm_dir, memory, tmp_path / "kaldi")[2:]])
    plain, kaldi = FaissDatastore.load(tmp_path / "plain"), FaissDatastore.load(tmp_path / "kaldi")
    assert kaldi.count == plain.count  # the empty transcript (utt99) adds nothing
    assert np.array_equal(np.load(tmp_path / "kaldi" / "values.npy"), np.load(tmp_path / "plain" / "values.npy"))
    # the Kaldi text given as --memory_text: its ids become memory text, and a warning says so
    with caplog.at_level("WARNING"):
        main(args(lm_dir, data / "text", tmp_path / "ids"))
    assert "give it as --memory_text_file" in caplog.text
    assert FaissDatastore.load(tmp_path / "ids").count > plain.count


def test_sharded_build_merge_and_resume(lm_dir, memory, tmp_path, caplog):
    main(args(lm_dir, memory, tmp_path / "single"))
    out = tmp_path / "sharded"
    for i in (1, 2, 3):
        main(args(lm_dir, memory, out, "--nj", "3", "--shard", str(i)))
    assert (shard_dir(out, 2) / "index.faiss").is_file()
    mtime = (shard_dir(out, 2) / "index.faiss").stat().st_mtime_ns
    caplog.set_level("INFO")
    main(args(lm_dir, memory, out, "--nj", "3", "--shard", "2"))  # resumable: skipped
    assert "already built" in caplog.text and (shard_dir(out, 2) / "index.faiss").stat().st_mtime_ns == mtime
    main(args(lm_dir, memory, out, "--nj", "3", "--merge"))
    a, b = FaissDatastore.load(tmp_path / "single"), FaissDatastore.load(out)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(a.keys, b.keys, rtol=1e-5, atol=1e-6)
    q = a.keys[:5] + 0.01
    for x, y in zip(a.search(q, 4), b.search(q, 4)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    # all shards in one call (built in turn, then merged)
    main(args(lm_dir, memory, tmp_path / "auto", "--nj", "2", "--fp16"))
    assert FaissDatastore.load(tmp_path / "auto").count == a.count


def test_errors(lm_dir, memory, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(SystemExit, match="empty"):
        main(args(lm_dir, empty, tmp_path / "x"))
    with pytest.raises(SystemExit, match="not built yet"):
        main(args(lm_dir, memory, tmp_path / "y", "--nj", "2", "--merge"))
    with pytest.raises(SystemExit, match="--memory_text_file"):
        main(["--memory_units", str(memory), "--key_encoder", str(lm_dir), "--out_dir", str(tmp_path / "z")])
    units = tmp_path / "units"
    units.write_text("u1 1 2 3\n")
    (tmp_path / "text").write_text("u1 the cat\n")
    with pytest.raises(SystemExit, match="speech"):  # a text-only tokenizer has no unit tokens
        main(
            [
                "--memory_units",
                str(units),
                "--memory_text_file",
                str(tmp_path / "text"),
                "--key_encoder",
                str(lm_dir),
                "--out_dir",
                str(tmp_path / "z"),
                "--device",
                "cpu",
            ]
        )
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_text_form_framing_and_defaults_recorded(lm_dir, memory, tmp_path):
    """Recipe-form (upper-case) memory shown to the key encoder lower-cased gives the keys of the
    lower-case memory; the manifest records text form, framing, windows and distance scale;
    without --window the library default (overlapping windows) applies."""
    from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS

    upper = tmp_path / "upper.txt"
    upper.write_text(memory.read_text().upper())
    main(args(lm_dir, memory, tmp_path / "lower"))
    main(args(lm_dir, upper, tmp_path / "upper", "--text_form", '{"case": "lower"}'))
    a, b = FaissDatastore.load(tmp_path / "lower"), FaissDatastore.load(tmp_path / "upper")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(a.keys, b.keys, rtol=1e-5, atol=1e-6)
    m = json.loads((tmp_path / "upper" / "manifest.json").read_text())
    build = m["info"]["build"]
    assert build["text_form"]["case"] == "lower" and build["framing"] == {"start": ["<bos>"], "end": ["<eos>"]}
    assert m["distance_scale"] == pytest.approx(b.distance_scale) and m["distance_scale"] > 0
    # upper-case memory read as it is: unknown words, other keys
    main(args(lm_dir, upper, tmp_path / "as_is"))
    assert not np.array_equal(FaissDatastore.load(tmp_path / "as_is").values, a.values)
    # defaults: window/stride from the library (no llm_usage.json here)
    main(
        [
            "--memory_text",
            str(memory),
            "--key_encoder",
            str(lm_dir),
            "--device",
            "cpu",
            "--out_dir",
            str(tmp_path / "d"),
        ]
    )
    build = json.loads((tmp_path / "d" / "manifest.json").read_text())["info"]["build"]
    assert (build["window"], build["stride"]) == (list(DEFAULTS.window), list(DEFAULTS.stride))
    # a framing token the tokenizer lacks is an error naming the option
    with pytest.raises(SystemExit, match="key encoder framing.*'<nope>'"):
        main(args(lm_dir, memory, tmp_path / "bad", "--framing", '{"end": ["<nope>"]}'))


def test_manifest_records_the_key_encoders_weights_fingerprint(lm_dir, memory, tmp_path):
    """The datastore remembers which weights made its keys (decoding refuses other weights)."""
    from espnet_llm_plugin.core.base_weights import base_content_hash
    from espnet_llm_plugin.retrieval.datastore import DatastoreError

    main(args(lm_dir, memory, tmp_path / "ds"))
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["key_encoder"]["weights_sha256"] == base_content_hash(lm_dir)
    FaissDatastore.load(tmp_path / "ds", expect={"weights_sha256": base_content_hash(lm_dir)})
    with pytest.raises(DatastoreError, match="weights sha256"):
        FaissDatastore.load(tmp_path / "ds", expect={"weights_sha256": "0" * 64})
