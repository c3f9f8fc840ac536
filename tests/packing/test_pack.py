"""pack_model: what goes into a pack, with paths relative to it and none of this machine."""

import json

import pytest
import yaml

from espnet_llm_plugin.packing import layout
from espnet_llm_plugin.packing.layout import PackError
from espnet_llm_plugin.packing.pack import pack_model, parse_decode_args


def _all_bytes(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_layout_relative_paths_and_no_machine_paths(packed):
    from espnet_llm_plugin.core.base_weights import base_content_hash, checkpoint_base_reference

    e, out = packed
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["decoder_conf"]["llm_path"] == "bases/tiny_llm"
    assert config["bpemodel"] == "tokenizer" and (out / "tokenizer" / "tokenizer.json").is_file()
    assert not (out / "tokenizer" / "model.safetensors").exists()  # the base's weights stay out
    assert config["normalize_conf"]["stats_file"] == "assets/feats_stats.npz"
    assert (out / "assets" / "feats_stats.npz").read_bytes() == b"stats"
    assert config["token_list"] == "tokens.txt" and (out / "tokens.txt").read_text().split() == ["<blank>", "a", "b"]
    # training-only paths: relative to the recipe directory (provenance); names stay names
    assert config["train_data_path_and_name_and_type"] == [["dump/train/wav.scp", "speech", "sound"]]
    assert config["output_dir"] == "exp/asr" and config["best_model_criterion"] == [["valid", "acc", "max"]]

    decode = yaml.safe_load((out / "decode.yaml").read_text())
    assert decode == {
        "beam_size": 3,
        "knnlm_datastore": "datastore",
        "knnlm_weight": 0.3,
        "nbest": 4,
        "knnlm_lm_path": "bases/tiny_llm",
    }
    assert sorted(p.name for p in (out / "datastore").iterdir()) == ["manifest.json"]  # manifest only
    assert (
        json.loads((out / "datastore" / "manifest.json").read_text())["key_encoder"]["model_path"] == "models/tiny_llm"
    )

    weights = layout.load_weights(out / "model.safetensors")
    assert weights["decoder.lora.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert checkpoint_base_reference(weights, "decoder.") == (base_content_hash(e["llm"]), "bases/tiny_llm")

    meta = layout.read_meta(out)
    (base,) = meta["bases"]
    assert base["sha256"] == base_content_hash(e["llm"]) and base["keys"] == ["decoder_conf.llm_path", "knnlm_lm_path"]
    assert meta["datastore"]["included"] is False and meta["datastore"]["entries"] == 7
    assert "|test|12.5|" in (out / "README.md").read_text()
    assert "(from decode)" in (out / "results" / "RESULTS.md").read_text()
    layout.verify_files(out, meta)
    for name, data in _all_bytes(out).items():
        assert str(e["root"]).encode() not in data, name


def test_datastore_included_and_tar_archive(experiment, tmp_path):
    import tarfile

    e = experiment
    out = pack_model(
        e["exp"] / "config.yaml",
        e["exp"] / "valid.acc.ave.pth",
        tmp_path / "p.tar.gz",
        decode_config=e["root"] / "decode.yaml",
        include_datastore=True,
        root=e["root"],
    )
    with tarfile.open(out) as t:
        names = set(t.getnames())
    assert {"datastore/manifest.json", "datastore/index.faiss", "pack.json", "model.safetensors"} <= names


def test_missing_absolute_path_is_refused_by_key(experiment, tmp_path):
    e = experiment
    config = yaml.safe_load((e["exp"] / "config.yaml").read_text())
    config["frontend_conf"] = {"hf_path": "/nonexistent/ssl_model"}
    (e["exp"] / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PackError, match="frontend_conf.hf_path = /nonexistent/ssl_model does not exist"):
        pack_model(e["exp"] / "config.yaml", e["exp"] / "valid.acc.ave.pth", tmp_path / "p", root=e["root"])
    assert not (tmp_path / "p").exists()


def test_checkpoint_of_another_base_is_refused(experiment, tmp_path):
    e = experiment
    (e["llm"] / "model.safetensors").write_bytes(b"base weights v2")  # changed after training
    with pytest.raises(PackError, match="would not load"):
        pack_model(e["exp"] / "config.yaml", e["exp"] / "valid.acc.ave.pth", tmp_path / "p.zip", root=e["root"])
    assert not (tmp_path / "p.zip").exists()


def test_parse_decode_args():
    assert parse_decode_args("--nbest 10 --knnlm_weight=0.5 --hf_lm_path exp/lm --no_repeat_ngram_size 3") == {
        "nbest": 10,
        "knnlm_weight": 0.5,
        "hf_lm_path": "exp/lm",
        "no_repeat_ngram_size": 3,
    }
    with pytest.raises(PackError, match="expected --key value"):
        parse_decode_args("nbest 10")
