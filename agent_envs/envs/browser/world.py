"""Procedural worlds: seeded, made-up people, companies, cities and countries, rendered as
interlinked HTML pages, with multi-hop questions whose answers are exact.

A world is a pure function of its seed and knobs. Every entity gets a page: a lead
paragraph, an infobox table, sections of prose and lists, and links to the entities it is
related to. Knobs shape how hard the pages are to read:

* ``distractors``: near-duplicate entities per entity (``Velmora Quist`` and
  ``Velmara Quist``), with pages of their own and different facts;
* ``deep_evidence``: the fraction of pages whose facts sit past the first 1024-token view
  (after long sections), so the model must scroll or ``find``;
* ``table_only``: the fraction of pages whose facts appear only in the infobox table;
* ``decoys``: pages that repeat an entity's alias (``also known as ...``) many times, so a
  search for the alias ranks them above the entity's own page.

A question follows a chain of ``hops`` pages: ``What is the population of the city where
the company that employs Velmora Quist is headquartered?`` (3 hops: person -> company ->
city). Each hop names the page and the text on it that carries the fact (the evidence).
"""

from __future__ import annotations

import hashlib
import html
import random
from dataclasses import dataclass, field

__all__ = ["Entity", "Question", "World", "WorldConfig", "build_world", "stable_seed"]

DOMAIN = "atlas.example"
_ONSETS = ("b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kl", "l", "m", "n",
           "p", "pr", "qu", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z", "v", "vel",
           "mor", "dar", "cal", "ser", "tal", "or")
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ia", "ei", "ou", "ae"]
_CODAS = ("", "", "n", "r", "s", "th", "l", "m", "x", "nd", "rk", "st")
_WORDS = ("amber", "basin", "cedar", "delta", "ember", "fable", "garnet", "harbor", "ivory",
          "jasper", "kettle", "lumen", "marrow", "nimbus", "opal", "pillar", "quarry", "raven",
          "saffron", "tallow", "umbra", "vesper", "willow", "yarrow", "zephyr", "anvil",
          "beacon", "cobble", "drift", "ferric", "gable", "hollow", "inlet", "juniper", "kiln",
          "ledger")
_OCCUPATIONS = ("cartographer", "violinist", "engineer", "botanist", "novelist", "architect",
                "astronomer", "chemist", "sculptor", "linguist", "economist", "surveyor")
_INDUSTRIES = ("shipbuilding", "textiles", "software", "mining", "publishing", "aerospace",
               "brewing", "pharmaceuticals", "glassmaking", "railways", "insurance", "optics")
_CURRENCIES = ("crown", "mark", "dinar", "florin", "real")
_DECOY_KINDS = ("disambiguation", "name", "term", "history", "usage", "others", "list",
                "etymology")
_ANIMALS = ("heron", "lynx", "ibex", "otter", "kestrel", "bison", "gecko", "marten", "crane",
            "tapir", "viper", "walrus")
_FILLER = ("The archive holds records of this in several volumes.",
           "Local historians have described the period in considerable detail.",
           "Several surveys were conducted during the following decades.",
           "The region's climate is mild, with wet winters and dry summers.",
           "Visitors often remark on the old stone bridges and narrow lanes.",
           "A number of smaller collections were later merged into one catalogue.",
           "Contemporary accounts differ on the exact sequence of events.",
           "The early correspondence survives only in fragments.",
           "Trade along the river shaped much of the surrounding economy.",
           "Annual festivals mark the change of seasons with music and markets.",
           "The road network was extended twice in the last century.",
           "Critics at the time offered mixed assessments of the work.")

# (relation, from type, to type, question phrase around the inner noun phrase, fact sentence)
RELATIONS = {
    "employer": ("person", "company", "the company that employs {np}",
                 "{name} works for {target}."),
    "birth_city": ("person", "city", "the city where {np} was born",
                   "{name} was born in {target}."),
    "hq": ("company", "city", "the city where {np} is headquartered",
           "{name} is headquartered in {target}."),
    "founder": ("company", "person", "the person who founded {np}",
                "{name} was founded by {target}."),
    "country": ("city", "country", "the country in which {np} lies", "{name} lies in {target}."),
}
# attribute -> (entity type, question label, fact sentence, infobox label)
ATTRIBUTES = {
    "birth_year": ("person", "birth year", "{name} was born in the year {value}.", "Born"),
    "occupation": ("person", "occupation", "By profession {name} is a {value}.", "Occupation"),
    "founded": ("company", "founding year", "{name} was established in {value}.", "Founded"),
    "industry": ("company", "industry", "{name} operates in the {value} industry.", "Industry"),
    "employees": ("company", "number of employees", "{name} has {value} employees.", "Employees"),
    "population": ("city", "population", "{name} has a population of {value}.", "Population"),
    "elevation": ("city", "elevation in metres", "{name} sits at an elevation of {value} metres.",
                  "Elevation (m)"),
    "currency": ("country", "currency", "The currency of {name} is the {value}.", "Currency"),
    "animal": ("country", "national animal", "The national animal of {name} is the {value}.",
               "National animal"),
}
_TYPE_NOUN = {"person": "person", "company": "company", "city": "city", "country": "country"}


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts``, the same on every machine and run."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Knobs of a world.

    Attributes:
        entities: Base entities (before distractors and decoys); pages are about
            ``entities * (1 + distractors)`` plus decoys.
        distractors: Near-duplicate entities per base entity.
        deep_evidence: Fraction of pages whose facts are past the first view window.
        table_only: Fraction of pages whose facts are only in the infobox table.
        decoys: Alias-repeating decoy pages per base entity (for paraphrased questions).
        filler_sentences: Prose sentences per ordinary section.
    """

    entities: int = 200
    distractors: int = 0
    deep_evidence: float = 0.0
    table_only: float = 0.0
    decoys: int = 0
    filler_sentences: int = 4

    def __post_init__(self) -> None:
        if self.entities < 8:
            raise ValueError(f"entities must be >= 8, got {self.entities!r}")
        if not 0 <= self.distractors <= 8:
            raise ValueError(f"distractors must be 0..8, got {self.distractors!r}")
        for name in ("deep_evidence", "table_only"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a fraction of pages in [0, 1], got "
                                 f"{getattr(self, name)!r}")
        if not 0 <= self.decoys <= 8:
            raise ValueError(f"decoys must be 0..8, got {self.decoys!r}")


@dataclass
class Entity:
    """One made-up thing with a page."""

    key: int
    kind: str
    name: str
    alias: str
    attrs: dict[str, str]
    rels: dict[str, int] = field(default_factory=dict)
    base: bool = True
    deep: bool = False
    table_only: bool = False

    @property
    def url(self) -> str:
        return f"https://{DOMAIN}/wiki/{self.name.replace(' ', '_')}"


@dataclass(frozen=True, kw_only=True)
class Question:
    """A multi-hop question over a world.

    Attributes:
        text: The question.
        answer: The exact answer as the page shows it.
        aliases: Other accepted forms (``12,345`` and ``12345``).
        evidence: Per hop, ``{url, title, text, query}``: the page, its title, the text on
            it that carries the fact, and a search query that finds it.
        hops: Pages in the chain.
        paraphrased: The question names the first entity by its alias only.
    """

    text: str
    answer: str
    aliases: tuple[str, ...]
    evidence: tuple[dict[str, str], ...]
    hops: int
    paraphrased: bool


def _name(rng: random.Random, kind: str) -> str:
    def word(syllables: int) -> str:
        s = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        return (s + rng.choice(_CODAS)).capitalize()

    if kind == "person":
        return f"{word(rng.randint(1, 2))} {word(2)}"
    if kind == "company":
        return f"{word(2)} {rng.choice(('Holdings', 'Works', 'Company', 'Group', 'Industries'))}"
    return word(rng.randint(2, 3))


def _near(rng: random.Random, name: str) -> str:
    """A near-duplicate of ``name``: one vowel changed, or a letter added to a word."""
    chars = list(name)
    vowels = [i for i, c in enumerate(chars) if c in "aeiou"]
    if vowels and rng.random() < 0.7:
        i = rng.choice(vowels)
        chars[i] = rng.choice([v for v in "aeiou" if v != chars[i]])
        return "".join(chars)
    words = name.split(" ")
    k = rng.randrange(len(words))
    words[k] = words[k] + rng.choice(("e", "a", "in", "son"))
    return " ".join(words)


def _number(value: int) -> str:
    return f"{value:,}"


class World:
    """A generated world: entities, their pages (``documents``), and questions.

    Args:
        seed: World seed.
        config: Knobs.
    """

    def __init__(self, seed: int, config: WorldConfig | None = None) -> None:
        self.seed = int(seed)
        self.config = config or WorldConfig()
        rng = random.Random(stable_seed("world", self.seed))
        self.entities: list[Entity] = []
        self._names: set[str] = set()
        cfg = self.config
        n = cfg.entities
        counts = {"country": max(2, n // 20), "city": max(3, n // 5), "company": max(3, n // 4)}
        counts["person"] = max(2, n - sum(counts.values()))
        by_kind: dict[str, list[int]] = {k: [] for k in counts}
        for kind in ("country", "city", "company", "person"):
            for _ in range(counts[kind]):
                e = self._new(rng, kind, None)
                by_kind[kind].append(e.key)
        for kind, keys in by_kind.items():
            for key in keys:
                e = self.entities[key]
                for rel, (src, dst, _, _) in RELATIONS.items():
                    if src == kind:
                        e.rels[rel] = rng.choice(by_kind[dst])
        for key in [e.key for e in self.entities]:
            original = self.entities[key]
            for _ in range(cfg.distractors):
                twin = self._new(rng, original.kind, original)
                for rel, (src, dst, _, _) in RELATIONS.items():
                    if src == twin.kind:
                        twin.rels[rel] = rng.choice(by_kind[dst])
        self.by_kind = by_kind
        self._decoys: list[tuple[str, str, str]] = []
        for key in [k for ks in by_kind.values() for k in ks]:
            e = self.entities[key]
            for d in range(cfg.decoys):
                self._decoys.append(self._decoy(rng, e, d))

    def _unique(self, rng: random.Random, make) -> str:
        for _ in range(1000):
            name = make()
            if name not in self._names:
                self._names.add(name)
                return name
        raise RuntimeError("could not draw a unique name; the world is too large")

    def _new(self, rng: random.Random, kind: str, twin_of: Entity | None) -> Entity:
        if twin_of is None:
            name = self._unique(rng, lambda: _name(rng, kind))
        else:
            name = self._unique(rng, lambda: _near(rng, twin_of.name))
        alias = self._unique(rng, lambda: f"{rng.choice(_WORDS).capitalize()} "
                                          f"{_name(rng, 'city')}")
        attrs = {
            "person": lambda: {"birth_year": str(rng.randint(1850, 1990)),
                               "occupation": rng.choice(_OCCUPATIONS)},
            "company": lambda: {"founded": str(rng.randint(1800, 2015)),
                                "industry": rng.choice(_INDUSTRIES),
                                "employees": _number(rng.randint(40, 90_000))},
            "city": lambda: {"population": _number(rng.randint(2_000, 4_000_000)),
                             "elevation": str(rng.randint(2, 2900))},
            "country": lambda: {"currency": f"{_name(rng, 'city')} {rng.choice(_CURRENCIES)}",
                                "animal": rng.choice(_ANIMALS)},
        }[kind]()
        e = Entity(key=len(self.entities), kind=kind, name=name, alias=alias, attrs=attrs,
                   base=twin_of is None, deep=rng.random() < self.config.deep_evidence,
                   table_only=rng.random() < self.config.table_only)
        self.entities.append(e)
        return e

    def _decoy(self, rng: random.Random, e: Entity, d: int) -> tuple[str, str, str]:
        title = f"{e.alias} ({_DECOY_KINDS[d]})"
        url = f"https://{DOMAIN}/wiki/{title.replace(' ', '_')}"
        body = " ".join(f"<p>{e.alias} may refer to several things. The name {e.alias} "
                        f"has been used by many unrelated groups. {rng.choice(_FILLER)}</p>"
                        for _ in range(3))
        return url, title, (f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
                            f"{body}</body></html>")

    # -- pages ----------------------------------------------------------------------

    def page_html(self, e: Entity) -> str:
        """The entity's page as HTML."""
        rng = random.Random(stable_seed("page", self.seed, e.key))
        esc = html.escape

        def link(target: Entity) -> str:
            return f'<a href="/wiki/{target.name.replace(" ", "_")}">{esc(target.name)}</a>'

        facts: list[str] = []
        rows: list[str] = []
        for attr, value in e.attrs.items():
            _, _, sentence, label = ATTRIBUTES[attr]
            facts.append(esc(sentence.format(name=e.name, value=value)))
            rows.append(f"<tr><th>{label}</th><td>{esc(value)}</td></tr>")
        for rel, target_key in e.rels.items():
            target = self.entities[target_key]
            sentence = RELATIONS[rel][3]
            facts.append(esc(sentence.format(name=e.name, target="\x00")).replace(
                "\x00", link(target)))
            rows.append(f"<tr><th>{rel.replace('_', ' ').capitalize()}</th>"
                        f"<td>{link(target)}</td></tr>")
        rng.shuffle(facts)
        kind_noun = _TYPE_NOUN[e.kind]
        filler = self.config.filler_sentences

        def section(title: str, n: int) -> str:
            return f"<h2>{title}</h2><p>{' '.join(rng.choice(_FILLER) for _ in range(n))}</p>"

        parts = [f"<html><head><title>{esc(e.name)}</title></head><body>",
                 '<nav><a href="/">Main page</a> <a href="/wiki/Special:Random">Random</a></nav>',
                 f"<h1>{esc(e.name)}</h1>",
                 (f"<p><b>{esc(e.name)}</b>, also known as {esc(e.alias)}, is a {kind_noun} "
                 f"described in this atlas.</p>")]
        infobox = f"<table class='infobox'><tr><th colspan='2'>{esc(e.name)}</th></tr>" \
                  f"{''.join(rows)}</table>"
        if e.table_only:
            prose = ""
        else:
            prose = "<h2>Facts</h2><ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>"
            infobox = f"<table class='infobox'><tr><th colspan='2'>{esc(e.name)}</th></tr>" \
                      f"<tr><td colspan='2'>{esc(kind_noun.capitalize())}</td></tr></table>"
        early = [section("Overview", filler), section("History", filler)]
        late = [section("Legacy", filler)]
        if e.deep:
            early += [section(t, 14) for t in ("Early period", "Middle period", "Recent period",
                                               "Sources", "Reception", "Archives", "Notes")]
            parts += early + [infobox, prose] + late
        else:
            parts += [infobox, prose] + early + late
        parts.append('<footer><a href="/about">About the atlas</a></footer></body></html>')
        return "".join(parts)

    def documents(self) -> list[tuple[str, str, str]]:
        """Every page as ``(url, title, html)``."""
        docs = [(e.url, e.name, self.page_html(e)) for e in self.entities]
        return docs + list(self._decoys)

    # -- questions ------------------------------------------------------------------

    def question(self, seed: int, *, hops: int, paraphrase: bool = False) -> Question:
        """A ``hops``-page question; the same seed gives the same question.

        Args:
            seed: Question seed within this world.
            hops: Pages to visit, 1..4.
            paraphrase: Name the first entity by its alias (the world needs ``decoys`` > 0
                for this to push its page down the search results).
        """
        if not 1 <= hops <= 4:
            raise ValueError(f"hops must be 1..4, got {hops!r}")
        rng = random.Random(stable_seed("question", self.seed, seed, hops, paraphrase))
        for _ in range(1000):
            kind = rng.choice(("person", "company", "city", "country"))
            chain = [rng.choice(self.by_kind[kind])]
            rels: list[str] = []
            ok = True
            for _ in range(hops - 1):
                here = self.entities[chain[-1]]
                options = sorted(here.rels)
                if not options:
                    ok = False
                    break
                rel = rng.choice(options)
                rels.append(rel)
                chain.append(here.rels[rel])
            if ok and len(set(chain)) == len(chain):
                break
        else:  # pragma: no cover
            raise RuntimeError("no chain found; the world is too small")
        last = self.entities[chain[-1]]
        attr = rng.choice(sorted(last.attrs))
        start = self.entities[chain[0]]
        np_ = (f"the {_TYPE_NOUN[start.kind]} also known as {start.alias}" if paraphrase
               else start.name)
        for rel in rels:
            np_ = RELATIONS[rel][2].format(np=np_)
        label = ATTRIBUTES[attr][1]
        text = f"What is the {label} of {np_}?"
        value = last.attrs[attr]
        aliases = {value, value.replace(",", "")} - {value}
        evidence = []
        for i, key in enumerate(chain):
            e = self.entities[key]
            carried = self.entities[chain[i + 1]].name if i + 1 < len(chain) else value
            query = (start.alias if paraphrase else e.name) if i == 0 else e.name
            evidence.append({"url": e.url, "title": e.name, "text": carried, "query": query})
        return Question(text=text, answer=value, aliases=tuple(sorted(aliases)),
                        evidence=tuple(evidence), hops=hops, paraphrased=paraphrase)


def build_world(seed: int, config: WorldConfig | None = None) -> World:
    """Generate a world (a pure function of ``seed`` and ``config``)."""
    return World(seed, config)
