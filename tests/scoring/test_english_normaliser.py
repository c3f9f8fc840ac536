import pytest

from espnet_llm_plugin.scoring.english_normaliser import EnglishScoringNormaliser, spelled_numbers_to_digits

norm = EnglishScoringNormaliser()


@pytest.mark.parametrize(
    "recipe_form, model_form",
    [
        # the pairs Whisper tiny.en produced on the demo's target-domain speech
        (
            "THE SELKIE ORBITER WAS LAUNCHED FROM VANDENBERG IN TWENTY THIRTY SEVEN",
            "The Selkie orbiter was launched from Vandenberg in 2037.",
        ),
        ("ITS TARGET IS HAUMEA A FAST SPINNING DWARF PLANET", "Its target is Haumea, a fast-spinning dwarf planet."),
        ("NINETEEN OH FIVE", "1905"),
        ("TWO THOUSAND AND FIVE", "2005"),
        ("ONE HUNDRED TWENTY THREE PEOPLE", "123 people"),
        ("FIFTY PERCENT OF TEN THOUSAND TWO HUNDRED", "50% of 10,200"),
        ("IT DOESN'T MATTER", "It doesn't matter!"),
    ],
)
def test_recipe_and_model_spellings_meet(recipe_form, model_form):
    assert norm(recipe_form) == norm(model_form)


@pytest.mark.parametrize(
    "a, b",
    [
        ("IN TWENTY FORTY ONE", "in 24-the-one"),  # a misrecognition stays an error
        ("TWENTY AND FIVE", "25"),  # "and" joins only after hundred/thousand
        ("ONE TWO THREE", "123"),  # digit by digit is not a cardinal
        ("DONT", "don't"),
    ],
)
def test_different_words_stay_different(a, b):
    assert norm(a) != norm(b)


def test_cardinals_years_and_plain_words():
    words = "the one who came in nineteen eighty four with two million three hundred thousand and one".split()
    assert spelled_numbers_to_digits(words) == "the 1 who came in 1984 with 2300001".split()
    assert spelled_numbers_to_digits("a hundred ten".split()) == ["a", "hundred", "10"]
    assert spelled_numbers_to_digits("nineteen hundred".split()) == ["1900"]
    assert spelled_numbers_to_digits([]) == []
