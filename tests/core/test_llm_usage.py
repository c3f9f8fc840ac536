"""read_llm_usage: the measured per-model defaults beside an LLM."""

import json

import pytest

from espnet_llm_plugin.core.llm_usage import read_llm_usage, usage_section


def test_missing_file_or_dir_reads_empty(tmp_path):
    assert read_llm_usage(tmp_path) == {}
    assert read_llm_usage(None) == {}
    assert read_llm_usage("some-org/hub-name") == {}
    assert usage_section(tmp_path, "framing") is None


def test_reads_object_and_sections(tmp_path):
    usage = {"framing": {"end": ["<|endoftext|>"]}, "knnlm": {"k": 8}}
    (tmp_path / "llm_usage.json").write_text(json.dumps(usage))
    assert read_llm_usage(str(tmp_path)) == usage
    assert usage_section(tmp_path, "knnlm") == {"k": 8}


def test_malformed_file_names_the_file(tmp_path):
    (tmp_path / "llm_usage.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"llm_usage\.json: expected a JSON object"):
        read_llm_usage(tmp_path)
    (tmp_path / "llm_usage.json").write_text(json.dumps({"framing": ["<s>"]}))
    with pytest.raises(ValueError, match=r"llm_usage\.json: 'framing' must be an object"):
        usage_section(tmp_path, "framing")


def test_core_package_imports_cheaply():
    """core/ is imported by every method: it must not pull torch or espnet in at import."""
    import subprocess
    import sys

    code = (
        "import sys; import espnet_llm_plugin.core.llm_usage, espnet_llm_plugin.core.text_form, "
        "espnet_llm_plugin.core.framing; "
        "print(sorted(m for m in ('torch', 'espnet2', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
