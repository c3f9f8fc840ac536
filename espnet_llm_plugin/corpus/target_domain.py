"""The "target" domain: space missions, rich in names and rare technical words.

A small invented *world* (missions, the scientists who lead them, the moons and asteroids
they visit, their launch sites, instruments and discoveries) is built from a seed. Every
target sentence talks about one mission and agrees with the world's facts ("doctor
okonkwo said the halcyon orbiter reached enceladus" only if Okonkwo leads Halcyon and
Halcyon went to Enceladus). Passages, the retrieval memory, state those facts in other
words, so a first-pass recogniser that mishears "enceladus" can be corrected by
retrieving the passage about the mission it did recognise.

Mission names, people and launch-site names are invented or rare; bodies are real.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from espnet_llm_plugin.corpus.template_grammar import TemplateGrammar, fix_articles
from espnet_llm_plugin.corpus.text_normalization import (
    normalize_text,
    number_to_words,
    year_to_words,
)

MIN_WORDS = 4
MAX_WORDS = 14

MISSION_NAMES = (
    "halcyon kestrel vesperine solara thalassa corvid zenobia marisol ortelius calyx "
    "astraea peregrine obsidian lumina selkie tamarisk quillon sirocco chimera borealis "
    "elysium tarragon vireo meridian"
).split()
CRAFTS = ("orbiter", "lander", "rover", "probe")
# How each kind of spacecraft arrives at its target (past tense).
ARRIVALS = {
    "orbiter": ("entered orbit around", "reached"),
    "lander": ("landed on", "touched down on"),
    "rover": ("landed on", "drove across the surface of"),
    "probe": ("flew past", "reached"),
}
SCIENTISTS: Tuple[Tuple[str, str], ...] = (
    ("amara", "okonkwo"),
    ("ingrid", "lindqvist"),
    ("haruki", "nakamura"),
    ("beatriz", "ferreira"),
    ("tomasz", "kowalczyk"),
    ("siobhan", "abernathy"),
    ("mateo", "castellanos"),
    ("folake", "oyelaran"),
    ("giulia", "marchetti"),
    ("laszlo", "szabo"),
    ("astrid", "thorsen"),
    ("rodrigo", "valdivia"),
    ("pieter", "achterberg"),
    ("anjali", "raghunathan"),
    ("dmitri", "volkonsky"),
    ("yusuf", "demirci"),
    ("ngozi", "adebayo"),
    ("teodora", "vasilescu"),
    ("rafael", "quintanilla"),
    ("henrike", "oosterhuis"),
    ("kalani", "kahananui"),
    ("priya", "venkataraman"),
    ("nadia", "haddad"),
    ("oskar", "bergqvist"),
)
TITLES = ("doctor", "professor")
BODIES: Tuple[Tuple[str, str], ...] = (
    ("enceladus", "an icy moon of saturn"),
    ("europa", "an icy moon of jupiter"),
    ("ganymede", "the largest moon of jupiter"),
    ("callisto", "a heavily cratered moon of jupiter"),
    ("titan", "the largest moon of saturn"),
    ("triton", "the largest moon of neptune"),
    ("phobos", "the inner moon of mars"),
    ("deimos", "the outer moon of mars"),
    ("ceres", "a dwarf planet in the asteroid belt"),
    ("vesta", "a large asteroid with a huge crater"),
    ("pluto", "a dwarf planet beyond neptune"),
    ("charon", "the largest moon of pluto"),
    ("haumea", "a fast spinning dwarf planet"),
    ("oberon", "the outer large moon of uranus"),
    ("titania", "the largest moon of uranus"),
    ("miranda", "a small moon of uranus"),
    ("iapetus", "a two toned moon of saturn"),
    ("hyperion", "a sponge like moon of saturn"),
    ("bennu", "a small near earth asteroid"),
    ("arrokoth", "a contact binary in the kuiper belt"),
    ("psyche", "a metal rich asteroid"),
    ("eris", "a distant dwarf planet"),
)
SITES = ("kourou baikonur tanegashima sriharikota vandenberg wallops jiuquan plesetsk wenchang mahia").split()
INSTRUMENTS = (
    "mass spectrometer",
    "infrared spectrometer",
    "magnetometer",
    "laser altimeter",
    "microwave radiometer",
    "seismometer",
    "plasma analyzer",
    "dust analyzer",
    "ultraviolet imager",
    "ground penetrating radar",
    "gamma ray spectrometer",
    "thermal imager",
    "neutron detector",
    "narrow angle camera",
)
DISCOVERIES = (
    "water vapor plumes",
    "active cryovolcanoes",
    "a buried salty ocean",
    "methane lakes",
    "a thin nitrogen atmosphere",
    "frozen ammonia deposits",
    "reddish tholins",
    "sulfur dioxide frost",
    "fresh impact craters",
    "olivine rich dust",
    "deuterium rich ice",
    "hydrated silicate minerals",
    "a weak magnetosphere",
    "carbonate salts",
    "hydrocarbon dunes",
    "complex organic molecules",
)
QUANTITIES = (
    "the albedo",
    "the magnetic field",
    "the surface temperature",
    "the gravity field",
    "the rotation period",
    "the tidal heating",
    "the exosphere",
    "the ionosphere",
    "the regolith depth",
    "the heat flow",
)
FIRST_YEAR, LAST_YEAR = 2026, 2045


@dataclass(frozen=True)
class Scientist:
    first: str
    last: str
    title: str

    @property
    def full_name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def short(self) -> str:
        return f"{self.title} {self.last}"


@dataclass(frozen=True)
class Body:
    name: str
    description: str


@dataclass(frozen=True)
class Mission:
    name: str
    craft: str
    target: Body
    lead: Scientist
    site: str
    launch_year: int
    instruments: Tuple[str, str]
    discovery: str
    discovery_year: int


@dataclass(frozen=True)
class World:
    """The target domain's facts; built by :func:`build_world`."""

    missions: Tuple[Mission, ...]
    scientists: Tuple[Scientist, ...]
    bodies: Tuple[Body, ...]

    def rare_entities(self) -> List[str]:
        """Names a general-domain recogniser cannot know: missions, people, bodies, sites."""
        names = [m.name for m in self.missions] + [m.site for m in self.missions]
        names += [s.first for s in self.scientists] + [s.last for s in self.scientists]
        names += [b.name for b in self.bodies]
        return sorted(set(names))

    def missions_to(self, body: Body) -> List[Mission]:
        return [m for m in self.missions if m.target == body]

    def missions_led_by(self, scientist: Scientist) -> List[Mission]:
        return [m for m in self.missions if m.lead == scientist]


def build_world(seed: int) -> World:
    """Assign the fixed names to each other at random (deterministic by ``seed``).

    Every body, site, instrument and discovery is used by at least one mission, and every
    scientist leads exactly one, so passages about the missions mention every entity.
    """
    rng = random.Random(f"world:{seed}")
    scientists = [Scientist(first, last, rng.choice(TITLES)) for first, last in SCIENTISTS]
    bodies = [Body(n, d) for n, d in BODIES]
    names = list(MISSION_NAMES)
    rng.shuffle(names)
    leads = rng.sample(scientists, len(scientists))
    targets = _cycled(bodies, len(names), rng)
    sites = _cycled(SITES, len(names), rng)
    discoveries = _cycled(DISCOVERIES, len(names), rng)
    instruments = _cycled(INSTRUMENTS, 2 * len(names), rng)
    missions = []
    for i, name in enumerate(names):
        pair = (instruments[2 * i], instruments[2 * i + 1])
        if pair[0] == pair[1]:
            pair = (pair[0], rng.choice([x for x in INSTRUMENTS if x != pair[0]]))
        launch = rng.randint(FIRST_YEAR, LAST_YEAR - 4)
        missions.append(
            Mission(
                name=name,
                craft=rng.choice(CRAFTS),
                target=targets[i],
                lead=leads[i % len(leads)],
                site=sites[i],
                launch_year=launch,
                instruments=pair,
                discovery=discoveries[i],
                discovery_year=launch + rng.randint(2, 4),
            )
        )
    return World(tuple(missions), tuple(scientists), tuple(bodies))


def _cycled(items: Sequence, n: int, rng: random.Random) -> list:
    """``n`` items: all of ``items`` in random order, repeated as needed (each used once
    before any is used twice)."""
    out: list = []
    while len(out) < n:
        out += rng.sample(list(items), len(items))
    return out[:n]


# --- sentences ---------------------------------------------------------------------------

_BINDINGS = (
    "mission",
    "craft",
    "body",
    "body_desc",
    "sci",
    "sci_full",
    "sci_last",
    "other_sci",
    "ins",
    "site",
    "year",
    "discovery",
    "arrived",
)


def _sentence_rules() -> Dict[str, List[str]]:
    r: Dict[str, List[str]] = {}
    r["craft_ref"] = [
        "the {mission} {craft}",
        "the {mission} {craft}",
        "the {mission} mission",
        "{mission}",
    ]
    r["said"] = ["said", "reported", "announced", "confirmed", "told us"]
    r["team"] = ["the science team", "the engineers", "the mission team", "the flight controllers"]
    r["day"] = "monday tuesday wednesday thursday friday saturday sunday".split()
    r["num"] = [number_to_words(i) for i in range(2, 13)]
    r["time_past"] = [
        "yesterday",
        "last night",
        "last week",
        "this morning",
        "on {day}",
        "last month",
        "{num} days ago",
        "last year",
    ]
    r["time_future"] = [
        "tomorrow",
        "next week",
        "next month",
        "next year",
        "on {day}",
        "in {num} days",
        "soon",
    ]
    r["quantity"] = list(QUANTITIES)
    r["pole"] = ["north", "south"]
    r["found"] = ["found", "detected", "discovered", "saw signs of"]
    r["sentence"] = [
        "{sci} {said} that {craft_ref} {arrived} {body} {time_past}",
        "{craft_ref} {arrived} {body} {time_past}",
        "{craft_ref} will reach {body} {time_future}",
        "did {craft_ref} find {discovery} on {body}",
        "we watched the launch of {craft_ref} from {site}",
        "the {ins} on {craft_ref} stopped working {time_past}",
        "{sci} wants to send another {craft} to {body}",
        "the team of {sci} measured {quantity} of {body}",
        "{craft_ref} sent new images of {body} {time_past}",
        "{sci} will present the {mission} results {time_future}",
        "the {mission} data show {discovery} near the {pole} pole of {body}",
        "is {craft_ref} still working",
        "engineers at {site} prepared {craft_ref} for launch",
        "the {ins} was designed by {sci_full}",
        "{sci_full} leads the {mission} science team",
        "why did {craft_ref} turn off its {ins}",
        "{craft_ref} {found} {discovery} with its {ins}",
        "the {ins} of {craft_ref} measured {quantity} of {body}",
        "{team} lost contact with {craft_ref} {time_past}",
        "how long did {craft_ref} take to reach {body}",
        "{sci} thinks {body} may have {discovery}",
        "the launch of {craft_ref} from {site} was delayed again",
        "{sci_full} and {other_sci} studied the {ins} data",
        "can the {ins} on {craft_ref} see {discovery}",
        "{sci} {said} that {body} has {discovery}",
        "{team} at {site} are ready for the {mission} launch",
        "our students followed the {mission} {craft} {time_past}",
        "{sci_last} said the {ins} worked well {time_past}",
        "the {mission} {craft} was launched in {year}",
        "{team} turned on the {ins} {time_past}",
        "{sci} explained how {craft_ref} {found} {discovery}",
        "when will {craft_ref} send the {ins} data",
    ]
    return r


def build_target_grammar() -> TemplateGrammar:
    """The target-domain grammar; expand ``sentence`` with :func:`sentence_bindings`."""
    return TemplateGrammar("target", _sentence_rules(), bindings=_BINDINGS)


def sentence_bindings(world: World, mission: Mission, rng: random.Random) -> Dict[str, str]:
    """Values that make one sentence about ``mission`` agree with the world's facts."""
    other = rng.choice([s for s in world.scientists if s != mission.lead])
    return {
        "mission": mission.name,
        "craft": mission.craft,
        "body": mission.target.name,
        "body_desc": mission.target.description,
        "sci": mission.lead.short,
        "sci_full": mission.lead.full_name,
        "sci_last": mission.lead.last,
        "other_sci": rng.choice([other.short, other.full_name]),
        "ins": rng.choice(mission.instruments),
        "site": mission.site,
        "year": year_to_words(mission.launch_year),
        "discovery": mission.discovery,
        "arrived": rng.choice(ARRIVALS[mission.craft]),
    }


# --- passages ----------------------------------------------------------------------------


def _mission_facts(m: Mission, rng: random.Random) -> Tuple[List[str], List[str]]:
    """(core facts, optional facts) about a mission, as sentences."""
    core = [
        f"the {m.name} {m.craft} was launched from {m.site} in {year_to_words(m.launch_year)}",
        f"its target is {m.target.name} {m.target.description}",
        f"the science team is led by {m.lead.title} {m.lead.full_name}",
        f"the {m.craft} carries a {m.instruments[0]} and a {m.instruments[1]}",
        f"in {year_to_words(m.discovery_year)} the {rng.choice(m.instruments)} found {m.discovery} on {m.target.name}",
    ]
    optional = [
        f"the {m.craft} also measured {rng.choice(QUANTITIES)} of {m.target.name}",
        f"the mission is planned to last {number_to_words(rng.randint(3, 12))} years",
        f"the {m.craft} weighs about {number_to_words(rng.randint(3, 19))} hundred kilograms",
        f"{m.name} sent {number_to_words(rng.randint(2, 90))} thousand images back to earth",
        f"{m.lead.last} says the {m.instruments[1]} is the most sensitive ever built",
    ]
    return core, optional


def _scientist_facts(world: World, s: Scientist, rng: random.Random) -> Tuple[List[str], List[str]]:
    missions = world.missions_led_by(s)
    core = [f"{s.title} {s.full_name} is a planetary scientist"]
    optional = []
    for m in missions:
        core.append(f"{s.last} leads the science team of the {m.name} {m.craft}")
        year = year_to_words(m.discovery_year)
        core.append(f"in {year} {s.last} reported {m.discovery} on {m.target.name}")
        optional.append(f"{s.last} helped design the {m.instruments[0]} of {m.name}")
        optional.append(f"before {m.name} {s.last} worked at the launch site in {m.site}")
    optional.append(f"{s.last} studies {rng.choice(QUANTITIES)} of icy worlds")
    optional.append(f"{s.last} often works with {rng.choice([x for x in world.scientists if x != s]).short}")
    return core, optional


def _body_facts(world: World, b: Body, rng: random.Random) -> Tuple[List[str], List[str]]:
    core = [f"{b.name} is {b.description}"]
    optional = [f"scientists want to measure {rng.choice(QUANTITIES)} of {b.name}"]
    for m in world.missions_to(b):
        core.append(f"it was visited by the {m.name} {m.craft} in {year_to_words(m.discovery_year - 1)}")
        optional.append(f"the {m.name} {m.craft} found {m.discovery} on {b.name}")
        optional.append(f"{m.lead.short} led the {m.name} study of {b.name}")
    return core, optional


def make_passage(world: World, topic: object, rng: random.Random, complete: bool) -> Dict:
    """One passage (3-6 sentences) about a mission, scientist or body.

    With ``complete`` the core facts all appear (so every related entity is named);
    otherwise a random selection of core and optional facts does.
    """
    if isinstance(topic, Mission):
        core, optional = _mission_facts(topic, rng)
        title = f"{topic.name} {topic.craft}"
    elif isinstance(topic, Scientist):
        core, optional = _scientist_facts(world, topic, rng)
        title = f"{topic.title} {topic.full_name}"
    elif isinstance(topic, Body):
        core, optional = _body_facts(world, topic, rng)
        title = topic.name
    else:
        raise TypeError(f"make_passage: cannot write a passage about {topic!r}")
    if complete:
        chosen = core[:6] + rng.sample(optional, max(0, min(len(optional), 3 - len(core))))
    else:
        k = rng.randint(3, min(6, len(core) + len(optional)))
        chosen = [core[0]] + rng.sample(core[1:] + optional, k - 1)
        chosen = [s for s in core + optional if s in chosen]  # keep the natural order
    sentences = [normalize_text(fix_articles(s)) for s in chosen]
    text = " ".join(sentences)
    entities = [e for e in world.rare_entities() if f" {e} " in f" {text} "]
    return {
        "title": normalize_text(title),
        "text": text,
        "sentences": sentences,
        "entities": entities,
    }
