"""CLI error handling (issue 15): our input errors are one line naming the file/utterance,
``--debug`` adds the traceback, and an unexpected error is never hidden behind one line."""

import json

import numpy as np
import pytest

from espnet_llm_plugin.cli_args import DEBUG_ENV, cli_errors, is_expected_error, run_cli
from espnet_llm_plugin.rescoring.nbest import NBestError

# functions "of this package" (their module name is ours) that fail in different ways
_G = {"__name__": "espnet_llm_plugin.fake_module", "np": np}
exec(
    "def our_raise():\n    raise ValueError('--x must be positive')\n"
    "def numpy_inside():\n    np.zeros(2).reshape(3)\n"
    "def library_raise():\n    import json\n    json.loads('{')\n"
    "def our_open(p):\n    open(p)\n",
    _G,
)


def test_our_input_error_is_one_line_without_traceback(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit, match=r"^prog: error: --x must be positive$"):
        run_cli("prog", _G["our_raise"])
    with pytest.raises(SystemExit, match=r"^prog: error: n.jsonl:2 'u7': bad$"):
        run_cli("prog", lambda: (_ for _ in ()).throw(NBestError("n.jsonl:2 'u7': bad")))
    assert "Traceback" not in capsys.readouterr().err


def test_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit, match="prog: error: --x must be positive"):
        run_cli("prog", _G["our_raise"], debug=True)
    err = capsys.readouterr().err
    assert "Traceback" in err and "our_raise" in err
    monkeypatch.setenv(DEBUG_ENV, "1")  # the same without the option (CLIs handing over to ESPnet)
    with pytest.raises(SystemExit):
        with cli_errors("prog"):
            _G["our_raise"]()
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("fn", ["numpy_inside", "library_raise"])
def test_unexpected_value_error_keeps_its_traceback(fn):
    # before: any ValueError became one line, hiding where a bug was
    with pytest.raises(ValueError) as e:
        run_cli("prog", _G[fn])
    assert not is_expected_error(e.value, (ValueError,))


def test_unexpected_exception_types_propagate():
    with pytest.raises(KeyError):
        run_cli("prog", lambda: {}["missing"])
    with pytest.raises(ZeroDivisionError):
        with cli_errors("prog", errors=(ValueError, OSError)):
            1 / 0


def test_missing_file_opened_by_our_code_is_an_input_error(tmp_path):
    with pytest.raises(SystemExit, match="prog: error: .*nope.txt"):
        run_cli("prog", lambda: _G["our_open"](tmp_path / "nope.txt"))


def test_asr_inference_takes_debug_out_of_espnet_options():
    from espnet_llm_plugin.bin.espnet_entry import pop_debug

    assert pop_debug(["--nbest", "2", "--debug"]) == (["--nbest", "2"], True)
    assert pop_debug(["--debug", "false", "--nbest", "2"]) == (["--nbest", "2"], False)
    assert pop_debug(["--debug=true", "--output_dir", "o"]) == (["--output_dir", "o"], True)
    assert pop_debug(["--debug", "--output_dir", "o"]) == (["--output_dir", "o"], True)


def test_nbest_cli_names_a_nan_score_and_debug_adds_the_traceback(tmp_path, capsys, monkeypatch):
    from espnet_llm_plugin.bin.nbest_to_jsonl import main

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    p = tmp_path / "n.jsonl"
    p.write_text('{"utt_id": "u7", "hyps": [{"text": "a", "score": NaN}]}\n')
    argv = ["--nbest_jsonl", str(p), "--out_dir", str(tmp_path / "dec")]
    with pytest.raises(SystemExit, match=r"nbest_to_jsonl: error: .*n\.jsonl:1 'u7'.*not finite"):
        main(argv)
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv + ["--debug"])
    assert "Traceback" in capsys.readouterr().err


def _rescore_inputs(tmp_path):
    (tmp_path / "n.jsonl").write_text(json.dumps({"utt_id": "u1", "hyps": [{"text": "a", "score": -1.0}]}) + "\n")
    (tmp_path / "ref").write_text("u1 a\nu2 b\n")
    for name in ("lm_a", "lm_b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())


def test_rescore_refuses_missing_nbest_and_weights_of_another_lm_before_loading(tmp_path):
    from espnet_llm_plugin.bin.rescore_nbest import main
    from espnet_llm_plugin.rescoring.weight_search import CombinationWeights, lm_identity

    _rescore_inputs(tmp_path)
    base = [
        "--nbest_jsonl",
        str(tmp_path / "n.jsonl"),
        "--weights_config",
        str(tmp_path / "w.yaml"),
        "--out_dir",
        str(tmp_path / "out"),
        "--lm_path",
        str(tmp_path / "lm_b"),
    ]
    with pytest.raises(
        SystemExit,
        match=r"rescore_nbest: error: 1 of 2 utterance\(s\) in .*ref have no n-best "
        r"list .*'u2'.*--allow_missing_nbest true",
    ):
        main(base + ["--ref_text", str(tmp_path / "ref")])
    CombinationWeights(1.0, 0.5, 0.0).save(tmp_path / "w.yaml", extra=lm_identity(tmp_path / "lm_a"))
    # the fake LM dirs cannot be loaded: the error comes before any LM load
    with pytest.raises(SystemExit, match=r"w\.yaml: weights were tuned for LM .*lm_a .*but the LM is .*lm_b"):
        main(base + ["--ref_text", str(tmp_path / "ref"), "--allow_missing_nbest", "true"])
