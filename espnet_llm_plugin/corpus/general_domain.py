"""The "general" domain: everyday English sentences over a small closed vocabulary.

Small on purpose (a few hundred words, sentences of 4-10 words): a tiny ASR model trained
for minutes on a few thousand synthetic utterances must be able to learn it. Variety comes
from many sentence patterns (statements, questions, requests; past, present, future; time,
place and number phrases) rather than from many words.

Subject-verb agreement uses three subject classes: ``sg3`` (he, the teacher: "likes",
"is", "was"), ``i`` ("like", "am", "was") and ``pl`` (we, they, the children: "like",
"are", "were").
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from espnet_llm_plugin.corpus.template_grammar import TemplateGrammar
from espnet_llm_plugin.corpus.text_normalization import number_to_words

MIN_WORDS = 4
MAX_WORDS = 10

# --- words -----------------------------------------------------------------------------

NAMES = "tom anna peter lucy sarah paul".split()
FAMILY = "mother father brother sister friend uncle aunt grandmother".split()
ROLES = "man woman boy girl teacher doctor driver".split()
PEOPLE_PL = "children friends parents neighbors".split()
ANIMALS: List[Tuple[str, str]] = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("bird", "birds"),
    ("cow", "cows"),
]
FOOD_COUNT: List[Tuple[str, str]] = [
    ("apple", "apples"),
    ("egg", "eggs"),
    ("orange", "oranges"),
    ("cake", "cakes"),
    ("sandwich", "sandwiches"),
]
FOOD_MASS = "bread rice soup cheese fish".split()
DRINKS = "tea coffee milk water".split()
MEALS = "breakfast lunch dinner".split()
THINGS: List[Tuple[str, str]] = [
    ("book", "books"),
    ("letter", "letters"),
    ("bag", "bags"),
    ("box", "boxes"),
    ("key", "keys"),
    ("phone", "phones"),
    ("ticket", "tickets"),
    ("cup", "cups"),
    ("bottle", "bottles"),
    ("coat", "coats"),
    ("picture", "pictures"),
]
FURNITURE = "table bed chair door window tree car sofa".split()
PLACES = ("park station market shop library hospital beach river office garden kitchen church").split()
VEHICLES = "car bus train bike boat".split()
ADJ_THING = "big small old new red blue green white black nice clean".split()
ADJ_FOOD = "fresh hot cold sweet good warm".split()
ADJ_PERSON = "old young tall happy".split()
ADJ_STATE = "tired hungry happy sad busy late cold sick ready".split()
WEATHER = "sunny cloudy windy cold hot warm".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()

# Verbs: base, third person singular, past, complement template.
TRANSITIVE: List[Tuple[str, str, str, str]] = [
    ("eat", "eats", "ate", "{food_np}"),
    ("cook", "cooks", "cooked", "{food_np}"),
    ("buy", "buys", "bought", "{goods_np}"),
    ("want", "wants", "wanted", "{goods_np}"),
    ("drink", "drinks", "drank", "{drink_np}"),
    ("read", "reads", "read", "{reading_np}"),
    ("write", "writes", "wrote", "{writing_np}"),
    ("open", "opens", "opened", "{openable_np}"),
    ("find", "finds", "found", "{thing_np}"),
    ("bring", "brings", "brought", "{thing_np}"),
    ("clean", "cleans", "cleaned", "{cleanable_np}"),
    ("fix", "fixes", "fixed", "{fixable_np}"),
    ("meet", "meets", "met", "{person_obj}"),
    ("help", "helps", "helped", "{person_obj}"),
    ("visit", "visits", "visited", "{visit_np}"),
    ("watch", "watches", "watched", "{watch_np}"),
    ("like", "likes", "liked", "{like_np}"),
    ("see", "sees", "saw", "{see_np}"),
    ("make", "makes", "made", "{make_np}"),
    ("give", "gives", "gave", "{thing_np} to {person_obj}"),
]
INTRANSITIVE: List[Tuple[str, str, str, str]] = [
    ("go", "goes", "went", "{destination}"),
    ("walk", "walks", "walked", "{destination}"),
    ("come", "comes", "came", "{come_where}"),
    ("sleep", "sleeps", "slept", "{loc_pp}"),
    ("work", "works", "worked", "{loc_pp}"),
    ("wait", "waits", "waited", "{wait_for}"),
    ("play", "plays", "played", "{play_what}"),
    ("sit", "sits", "sat", "{position_pp}"),
]
# -ing forms of the verbs used in progressive sentences ("she is reading a book").
ING = {
    "eat": "eating",
    "cook": "cooking",
    "read": "reading",
    "write": "writing",
    "clean": "cleaning",
    "watch": "watching",
    "make": "making",
    "sleep": "sleeping",
    "work": "working",
    "wait": "waiting",
    "play": "playing",
    "go": "going",
    "sit": "sitting",
}

# Subject classes: (subject rule, present "be", past "be", present verb form rule,
# "do", "have", "want").
AGREEMENT = {
    "sg3": ("subj_sg3", "is", "was", "vp_s", "does", "has", "wants"),
    "i": ("subj_i", "am", "was", "vp_base", "do", "have", "want"),
    "pl": ("subj_pl", "are", "were", "vp_base", "do", "have", "want"),
}


def _lexicon_rules() -> Dict[str, List[str]]:
    r: Dict[str, List[str]] = {}
    r["name"] = NAMES
    r["family"] = FAMILY
    r["role"] = ROLES
    r["people_pl"] = PEOPLE_PL
    r["poss"] = "my your his her our their".split()
    r["det_def"] = ["the", "the", "my", "your", "his", "her", "our", "their", "this", "that"]
    r["det_any"] = ["{det_def}", "a", "a"]
    r["animal_sg"] = [s for s, _ in ANIMALS]
    r["animal_pl"] = [p for _, p in ANIMALS]
    r["food_count_sg"] = [s for s, _ in FOOD_COUNT]
    r["food_count_pl"] = [p for _, p in FOOD_COUNT]
    r["food_mass"] = FOOD_MASS
    r["drink"] = DRINKS
    r["meal"] = MEALS
    r["thing_sg"] = [s for s, _ in THINGS]
    r["thing_pl"] = [p for _, p in THINGS]
    r["furniture"] = FURNITURE
    r["place"] = PLACES
    r["vehicle"] = VEHICLES
    r["adj_thing"] = ADJ_THING
    r["adj_food"] = ADJ_FOOD
    r["adj_person"] = ADJ_PERSON
    r["adj_state"] = ADJ_STATE
    r["weather"] = WEATHER
    r["day"] = DAYS
    r["num_small"] = [number_to_words(i) for i in range(2, 11)]
    r["hour"] = [number_to_words(i) for i in range(1, 13)]
    r["count"] = [number_to_words(i) for i in range(2, 21)]
    r["minutes"] = [number_to_words(i) for i in range(5, 60)]
    r["price"] = [number_to_words(i) for i in range(2, 100)]
    r["currency"] = ["dollars", "pounds"]
    r["freq"] = "always often usually sometimes never".split()
    r["modal"] = "can can't should must could".split()
    r["obj_pron"] = "me you him her us them".split()
    return r


def _phrase_rules() -> Dict[str, List[str]]:
    r: Dict[str, List[str]] = {}
    # subjects
    r["subj_sg3"] = [
        "he",
        "she",
        "{name}",
        "{name}",
        "{poss} {family}",
        "{poss} {family}",
        "{poss} {family}",
        "the {role}",
        "the {adj_person} {role}",
    ]
    r["subj_i"] = ["i"]
    r["subj_pl"] = [
        "we",
        "you",
        "they",
        "the {people_pl}",
        "{poss} {people_pl}",
        "{name} and i",
    ]
    r["subj"] = ["{subj_sg3}", "{subj_sg3}", "{subj_i}", "{subj_pl}"]
    r["person_obj"] = ["{obj_pron}", "{name}", "{poss} {family}", "the {role}", "the {people_pl}"]
    # noun phrases
    r["food_np"] = [
        "{det_any} {food_count_sg}",
        "{det_any} {adj_food} {food_count_sg}",
        "the {food_mass}",
        "some {food_mass}",
        "some {adj_food} {food_mass}",
        "{num_small} {food_count_pl}",
        "some {food_count_pl}",
        "the {food_count_pl}",
    ]
    r["drink_np"] = [
        "some {drink}",
        "a cup of {drink}",
        "a glass of {drink}",
        "the {drink}",
        "{poss} {drink}",
    ]
    r["thing_np"] = [
        "{det_any} {thing_sg}",
        "{det_any} {adj_thing} {thing_sg}",
        "the {thing_pl}",
        "{poss} {thing_pl}",
        "{num_small} {thing_pl}",
        "{poss} {adj_thing} {thing_pl}",
    ]
    r["thing_def_sg"] = ["{det_def} {thing_sg}", "{det_def} {adj_thing} {thing_sg}"]
    r["thing_def_pl"] = ["the {thing_pl}", "{poss} {thing_pl}", "{poss} {adj_thing} {thing_pl}"]
    r["goods_np"] = ["{food_np}", "{thing_np}", "{drink_np}", "a new {vehicle}"]
    r["reading_np"] = [
        "{det_any} book",
        "the newspaper",
        "{poss} letter",
        "a long story",
        "the map",
        "{poss} books",
    ]
    r["writing_np"] = ["a letter", "a long letter", "a story", "a short story"]
    r["openable_np"] = [
        "the door",
        "the window",
        "the box",
        "{poss} bag",
        "the bottle",
        "the shop",
        "the letter",
    ]
    r["cleanable_np"] = ["the kitchen", "{poss} room", "the house", "the car", "the table"]
    r["fixable_np"] = [
        "{det_def} {vehicle}",
        "the clock",
        "{poss} computer",
        "the door",
        "the window",
        "{poss} phone",
    ]
    r["visit_np"] = ["{person_obj}", "the {place}", "the old church", "{poss} grandmother"]
    r["watch_np"] = [
        "the game",
        "a film",
        "the news",
        "the birds",
        "the children",
        "the {animal_pl}",
        "the river",
    ]
    r["like_np"] = [
        "{food_np}",
        "{drink}",
        "the {adj_thing} {thing_sg}",
        "{person_obj}",
        "{animal_pl}",
        "the {place}",
    ]
    r["see_np"] = [
        "{person_obj}",
        "{det_any} {animal_sg}",
        "{num_small} {animal_pl}",
        "{det_any} {adj_thing} {vehicle}",
        "{thing_np}",
    ]
    r["make_np"] = ["a cake", "some tea", "{meal}", "a sandwich", "a cup of coffee", "some soup"]
    # places and times
    r["destination"] = [
        "to the {place}",
        "to the {place}",
        "to school",
        "to work",
        "home",
        "to bed",
        "to church",
        "to town",
    ]
    r["come_where"] = ["home", "back", "home late", "back early", "to the {place}", "to school"]
    r["loc_pp"] = [
        "at home",
        "at school",
        "at work",
        "in the {place}",
        "at the {place}",
        "near the {place}",
        "in town",
    ]
    r["position_pp"] = [
        "on the {furniture}",
        "under the {furniture}",
        "near the {furniture}",
        "behind the {furniture}",
        "next to the {furniture}",
    ]
    r["wait_for"] = [
        "for the {vehicle}",
        "for {person_obj}",
        "at the station",
        "outside",
        "for a long time",
    ]
    r["play_what"] = [
        "football",
        "with the {animal_sg}",
        "with {person_obj}",
        "in the garden",
        "outside",
    ]
    r["clock_time"] = ["{hour} o'clock", "half past {hour}", "{hour} o'clock", "ten past {hour}"]
    r["time_past"] = [
        "yesterday",
        "last night",
        "last week",
        "this morning",
        "on {day}",
        "{num_small} days ago",
        "at {clock_time}",
        "last year",
        "this afternoon",
        "yesterday morning",
    ]
    r["time_future"] = [
        "tomorrow",
        "next week",
        "tonight",
        "on {day}",
        "later",
        "soon",
        "in {num_small} days",
        "at {clock_time}",
        "next year",
        "this evening",
        "tomorrow morning",
    ]
    r["time_habit"] = [
        "every day",
        "every morning",
        "in the morning",
        "in the evening",
        "at night",
        "after school",
        "after work",
        "before dinner",
        "on {day}",
        "at the weekend",
    ]
    r["time_now"] = ["today", "now", "this morning", "tonight", "again"]
    # verb phrases
    verbs = TRANSITIVE + INTRANSITIVE
    for form, idx in (("vp_base", 0), ("vp_s", 1), ("vp_past", 2)):
        r[form] = [f"{verb[idx]} {verb[3]}" for verb in verbs]
    r["vp_ing"] = [f"{ING[verb[0]]} {verb[3]}" for verb in verbs if verb[0] in ING]
    r["count_verb"] = ["buy", "eat", "see", "find", "bring", "want"]
    r["what_verb"] = ["buy", "eat", "cook", "read", "write", "see", "make", "bring", "find"]
    return r


def _sentence_rules() -> Dict[str, List[str]]:
    r: Dict[str, List[str]] = {}
    statements = [
        "{subj} {vp_past} {time_past}",
        "{subj} {vp_past} {time_past}",
        "{subj} {vp_past}",
        "{subj} will {vp_base} {time_future}",
        "{subj} will {vp_base} {time_future}",
        "{subj} {modal} {vp_base}",
        "{subj} {vp_past} and {vp_past}",
        "{subj} {vp_past} because it was {weather}",
        "{subj} {vp_past} because it was late",
        "{subj} bought {count} {food_count_pl} for {price} {currency}",
        "{subj} waited for {minutes} minutes",
        "the {vehicle} leaves in {minutes} minutes",
        "the {thing_sg} cost {price} {currency}",
        "there is {det_any} {animal_sg} {position_pp}",
        "there was {det_any} {adj_thing} {thing_sg} {position_pp}",
        "there are {count} {animal_pl} in the {place}",
        "there were {num_small} {thing_pl} {position_pp}",
        "{thing_def_sg} is {position_pp}",
        "{thing_def_pl} are {position_pp}",
        "the {vehicle} leaves at {clock_time}",
        "the {vehicle} was late {time_past}",
        "it is {weather} {time_now}",
        "it was {weather} and {weather} {time_past}",
        "it will be {weather} {time_future}",
        "it was raining {time_past}",
        "it is snowing in the {place}",
        "it is {clock_time} now",
    ]
    questions = [
        "did {subj} {vp_base} {time_past}",
        "will {subj} {vp_base} {time_future}",
        "can {subj} {vp_base}",
        "could you {vp_base} please",
        "where is {thing_def_sg}",
        "where are {thing_def_pl}",
        "where did {subj} go {time_past}",
        "where did {subj} put {thing_def_sg}",
        "how many {food_count_pl} did {subj} {count_verb}",
        "how many {thing_pl} did {subj} {count_verb}",
        "how much is {thing_def_sg}",
        "how much did {thing_def_sg} cost",
        "what time does the {vehicle} leave",
        "what time did {subj} come home",
        "who {vp_past} {time_past}",
        "why did {subj} {vp_base}",
        "what did {subj} {what_verb} {time_past}",
        "which {thing_sg} did {subj} {count_verb}",
        "is it {weather} in the {place}",
        "do you want {drink_np}",
        "would you like {food_np}",
        "when will {subj} {vp_base}",
        "when did {subj} {vp_base}",
    ]
    requests = [
        "please {vp_base}",
        "please {vp_base} {time_future}",
        "please don't {vp_base}",
        "don't {vp_base} {time_now}",
        "let's {vp_base} {time_future}",
        "let's go to the {place} {time_future}",
        "please give {obj_pron} {thing_def_sg}",
        "please sit {position_pp}",
    ]
    for cls, (subj, be, be_past, vp, do, have, want) in AGREEMENT.items():
        statements += [
            f"{{{subj}}} {{freq}} {{{vp}}}",
            f"{{{subj}}} {{{vp}}} {{time_habit}}",
            f"{{{subj}}} {be} {{adj_state}} {{time_now}}",
            f"{{{subj}}} {be_past} {{adj_state}} {{time_past}}",
            f"{{{subj}}} {be} {{vp_ing}}",
            f"{{{subj}}} {be_past} {{vp_ing}} {{time_past}}",
            f"{{{subj}}} {want} to {{vp_base}}",
            f"{{{subj}}} {have} {{thing_np}}",
            f"{{{subj}}} {do}n't {{vp_base}} {{time_habit}}",
        ]
        questions += [
            f"{do} {{{subj}}} {{vp_base}} {{time_habit}}",
            f"{be} {{{subj}}} {{adj_state}} {{time_now}}",
            f"{be} {{{subj}}} {{vp_ing}}",
            f"why {be} {{{subj}}} so {{adj_state}}",
        ]
    r["statement"] = statements
    r["question"] = questions
    r["request"] = requests
    r["sentence"] = ["{statement}"] * 5 + ["{question}"] * 3 + ["{request}"]
    return r


def build_general_grammar() -> TemplateGrammar:
    """The general-domain grammar; expand its ``sentence`` rule."""
    rules = {**_lexicon_rules(), **_phrase_rules(), **_sentence_rules()}
    return TemplateGrammar("general", rules)
