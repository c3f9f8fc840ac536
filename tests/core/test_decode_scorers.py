"""The decode-time scorer table: which scorers the decode options switch on, in which order,
and how a scorer is registered and given its weight and conf."""

import pytest

from espnet_llm_plugin.core import decode_scorers as ds


class Options:
    """The decode options the table reads (ExtraDecodingOptions' names)."""

    def __init__(self, **kw):
        self.no_repeat_ngram_size = 0
        self.hf_lm_path = ""
        self.hf_lm_weight = 0.0
        self.knnlm_datastore = ""
        self.knnlm_weight = 0.3
        self.scorers = None
        self.__dict__.update(kw)


def test_flat_keys_switch_on_the_builtin_scorers_in_beam_order():
    assert ds.scorer_confs(Options()) == []
    opts = Options(no_repeat_ngram_size=3, hf_lm_path="lm", hf_lm_weight=0.2, knnlm_datastore="ds")
    assert ds.scorer_confs(opts) == [
        ("no_repeat_ngram", 1.0, {"size": 3}),
        ("hf_lm", 0.2, {"path": "lm"}),
        ("knnlm", 0.3, {}),
    ]
    # an hf_lm weight of 0 leaves it out (as ESPnet leaves out its own 0-weight scorers)
    assert ds.scorer_confs(Options(hf_lm_path="lm")) == []


def test_scorers_mapping_reaches_any_registered_scorer():
    opts = Options(scorers={"hf_lm": {"weight": 0.5, "conf": {"path": "x"}}})
    assert ds.scorer_confs(opts) == [("hf_lm", 0.5, {"path": "x"})]


@pytest.mark.parametrize(
    "scorers, message",
    [
        ({"nope": {"weight": 1}}, "unknown decode scorer 'nope'.*registered: .*hf_lm"),
        ({"hf_lm": {"conf": {}}}, r"scorers.hf_lm must be a mapping with weight"),
        ({"hf_lm": {"weight": 1, "confs": {}}}, r"scorers.hf_lm must be a mapping with weight"),
        ({"hf_lm": {"weight": "high"}}, r"scorers.hf_lm.weight must be a number"),
        ({"hf_lm": {"weight": 1, "conf": [1]}}, r"scorers.hf_lm.conf must be a mapping"),
    ],
)
def test_bad_scorers_entries_are_named(scorers, message):
    with pytest.raises(ValueError, match=message):
        ds.scorer_confs(Options(scorers=scorers))


def test_a_scorer_set_twice_is_refused():
    opts = Options(hf_lm_path="lm", hf_lm_weight=0.1, scorers={"hf_lm": {"weight": 0.2}})
    with pytest.raises(ValueError, match="'hf_lm' is set twice"):
        ds.scorer_confs(opts)


def test_register_refuses_a_taken_name_and_builds_with_conf(monkeypatch):
    monkeypatch.setattr(ds, "DECODE_SCORERS", dict(ds.DECODE_SCORERS))
    with pytest.raises(ValueError, match="'hf_lm' is registered already"):
        ds.register_decode_scorer("hf_lm", "somewhere:else")
    ds.register_decode_scorer("echo", f"{__name__}:echo_builder", "test")
    ds.register_decode_scorer("echo", f"{__name__}:echo_builder")  # the same again: no-op
    added = ds.get_decode_scorer("echo").build(None, {"value": 7})
    assert isinstance(added, ds.ScorerAddition) and added.scorer == ("echo", 7) and added.replaces is None
    with pytest.raises(ValueError, match=r"decode scorer 'echo': bad conf \{'valu': 7\}"):
        ds.get_decode_scorer("echo").build(None, {"valu": 7})


def echo_builder(ctx, value):
    return ("echo", value)


def test_builtin_targets_import():
    """Every row of the table names a builder that exists (a typo would fail only at decode time)."""
    import importlib

    for scorer in ds.DECODE_SCORERS.values():
        module, _, attr = scorer.target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), scorer.target
