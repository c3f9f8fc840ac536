"""TextForm: recipe text <-> the text an LLM reads, and its resolution from config and llm_usage.json."""

import json
import random

import pytest

from espnet_llm_plugin.core.text_form import TextForm, resolve_text_form, sentence_case


def test_identity_form_changes_nothing_but_whitespace():
    form = TextForm()
    assert form.is_identity
    assert form.to_llm("HELLO  WORLD ") == "HELLO WORLD"
    assert form.to_recipe("Hello world.") == "Hello world."


def test_sentence_case_capitalises_first_letter_and_pronoun_i():
    assert sentence_case("I THINK I'M RIGHT AND I'LL SAY I'VE SEEN IT I'D SAY") == (
        "I think I'm right and I'll say I've seen it I'd say"
    )
    # 'i' inside words and other contractions are left alone
    assert sentence_case("IT IS MY IDEA ISN'T IT") == "It is my idea isn't it"
    assert sentence_case("it ends. then another? yes") == "It ends. Then another? Yes"
    assert sentence_case("") == ""


def test_to_llm_cases_and_punctuation():
    assert TextForm(case="lower").to_llm("THE CAT'S MAT") == "the cat's mat"
    assert TextForm(case="sentence").to_llm("THE CAT'S MAT") == "The cat's mat"
    assert TextForm(case="upper").to_llm("the cat") == "THE CAT"
    assert TextForm(punctuation="strip").to_llm('hello, "world"! well-known don\'t') == ("hello world well-known don't")
    fp = TextForm(case="sentence", punctuation="final_period")
    assert fp.to_llm("THE CAT SAT") == "The cat sat."
    assert fp.to_llm("IS IT?") == "Is it?"
    # empty transcripts (non-speech segments) stay empty
    assert fp.to_llm("") == ""


def test_to_recipe_maps_back_case_and_added_period():
    fp = TextForm(case="sentence", punctuation="final_period", recipe_case="upper")
    assert fp.to_recipe(" The cat  sat. ") == "THE CAT SAT"
    assert TextForm(case="sentence", recipe_case="lower").to_recipe("I saw Anna") == "i saw anna"
    assert TextForm(punctuation="strip", recipe_case="upper").to_recipe("Hi, there.") == "HI THERE"
    assert not fp.is_identity


WORDS = [
    "THE",
    "I",
    "I'M",
    "I'LL",
    "I'VE",
    "I'D",
    "DON'T",
    "ISN'T",
    "ANNA'S",
    "IDEA",
    "IT",
    "O'BRIEN",
    "ZURICH",
    "A",
    "PAID",
    "SEVENTY",
    "Q",
    "IT'S",
    "WE'VE",
]


@pytest.mark.parametrize("case", ["lower", "sentence", "upper", "as_is"])
@pytest.mark.parametrize("punctuation", ["keep", "strip", "final_period"])
def test_to_recipe_inverts_to_llm_on_recipe_form_text(case, punctuation):
    """Property: upper-case recipe text with apostrophes survives the round trip."""
    form = TextForm(case=case, punctuation=punctuation, recipe_case="upper")
    rng = random.Random(f"{case}-{punctuation}")
    for _ in range(300):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))
        assert form.to_recipe(form.to_llm(text)) == text, text
    lower = TextForm(case=case, punctuation=punctuation, recipe_case="lower")
    for _ in range(100):
        text = " ".join(rng.choice(WORDS).lower() for _ in range(rng.randint(1, 12)))
        assert lower.to_recipe(lower.to_llm(text)) == text, text


def test_from_dict_rejects_unknown_keys_and_values_naming_where():
    assert TextForm.from_dict({"case": "sentence"}, "x").case == "sentence"
    assert TextForm.from_dict(None, "x") == TextForm()
    with pytest.raises(ValueError, match=r"conf/a\.yaml: decoder_conf.text_form.*unknown.*'casing'"):
        TextForm.from_dict({"casing": "lower"}, "conf/a.yaml: decoder_conf.text_form")
    with pytest.raises(ValueError, match=r"conf/a\.yaml.*case.*'title'"):
        TextForm.from_dict({"case": "title"}, "conf/a.yaml")
    with pytest.raises(ValueError, match="conf/a.yaml.*mapping"):
        TextForm.from_dict("sentence", "conf/a.yaml")
    form = TextForm(case="sentence", punctuation="final_period", recipe_case="upper")
    assert TextForm.from_dict(form.to_dict(), "x") == form


def test_resolve_text_form_layers_config_over_llm_usage(tmp_path):
    assert resolve_text_form(None, tmp_path, "cfg").is_identity
    assert resolve_text_form(None, None, "cfg").is_identity
    (tmp_path / "llm_usage.json").write_text(json.dumps({"text_form": {"case": "sentence"}}))
    assert resolve_text_form(None, tmp_path, "cfg") == TextForm(case="sentence")
    assert resolve_text_form({"recipe_case": "upper"}, tmp_path, "cfg") == TextForm(
        case="sentence", recipe_case="upper"
    )
    assert resolve_text_form({"case": "as_is"}, tmp_path, "cfg").is_identity
    with pytest.raises(ValueError, match="cfg.*unknown"):
        resolve_text_form({"bogus": 1}, tmp_path, "cfg")


def test_bad_llm_usage_names_the_file(tmp_path):
    (tmp_path / "llm_usage.json").write_text(json.dumps({"text_form": {"case": "Title"}}))
    with pytest.raises(ValueError, match=r"llm_usage\.json: text_form.*'Title'"):
        resolve_text_form(None, tmp_path, "cfg")
    (tmp_path / "llm_usage.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"llm_usage\.json: not valid JSON"):
        resolve_text_form(None, tmp_path, "cfg")


def test_infer_recipe_case():
    from espnet_llm_plugin.core.text_form import infer_recipe_case

    assert infer_recipe_case(["HELLO THERE", "", "I'M 2 LATE"]) == "upper"
    assert infer_recipe_case(["hello there", "i'm late"]) == "lower"
    assert infer_recipe_case(["HELLO", "hello"]) == "as_is"
    assert infer_recipe_case(["", "123"]) == "as_is"
