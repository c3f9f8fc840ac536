"""unpack / open_pack: a pack on another machine, its base models found and checked by hash."""

import shutil
import zipfile

import pytest

from espnet_llm_plugin.packing.layout import PackError
from espnet_llm_plugin.packing.unpack import PackBaseMismatchError, open_pack, unpack


def test_unpack_links_the_base_found_in_base_dir(packed, tmp_path):
    e, pack = packed
    models = tmp_path / "elsewhere_models"
    shutil.copytree(e["llm"], models / "tiny_llm")
    out = unpack(pack, tmp_path / "model", base_dirs=[models])
    assert (out / "bases" / "tiny_llm").resolve() == (models / "tiny_llm").resolve()
    model = open_pack(out)  # the links are found again without base_dirs
    config = model.config()
    assert config["decoder_conf"]["llm_path"] == str((models / "tiny_llm").resolve())
    assert config["normalize_conf"]["stats_file"] == str(model.root / "assets" / "feats_stats.npz")
    assert config["train_data_path_and_name_and_type"][0][0] == "dump/train/wav.scp"  # provenance untouched
    # the datastore was packed as its manifest only: decoding leaves kNN-LM out unless given one
    assert model.decode_options() == {"beam_size": 3, "nbest": 4}


def test_base_with_other_weights_is_refused_naming_both(packed, tmp_path):
    from espnet_llm_plugin.core.base_weights import base_content_hash

    e, pack = packed
    other = tmp_path / "models" / "tiny_llm"
    shutil.copytree(e["llm"], other)
    (other / "model.safetensors").write_bytes(b"fine-tuned elsewhere")
    want, have = base_content_hash(e["llm"]), base_content_hash(other)
    with pytest.raises(PackBaseMismatchError, match=rf"{other} holds weights with sha256 {have}.*sha256 {want}"):
        unpack(pack, tmp_path / "model", base_dirs=[other.parent])
    assert not (tmp_path / "model").exists()


def test_missing_base_and_damaged_file_are_named(packed, tmp_path):
    e, pack = packed
    shutil.move(e["llm"], tmp_path / "gone")
    with pytest.raises(PackError, match=r"base model tiny_llm \(decoder_conf.llm_path, knnlm_lm_path.*not found"):
        open_pack(pack, base_dirs=[tmp_path / "nowhere"])
    (pack / "tokens.txt").write_text("x\n")
    with pytest.raises(PackError, match="tokens.txt differs from the file that was packed"):
        open_pack(pack, base_dirs=[tmp_path / "gone"])


def test_archive_member_outside_the_directory_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil.txt", "x")
        z.writestr("pack.json", "{}")
    with pytest.raises(PackError, match="outside the unpacked directory"):
        unpack(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
