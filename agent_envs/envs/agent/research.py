"""Research tasks: find the facts by browsing a procedural world, then compute with python.

A world is a made-up country's river districts. Each district runs gauging stations, and
each station's page holds a table of its annual flow (megalitres, six-figure numbers) for
twenty years. The facts exist only on those pages (seeded, made up), and the question asks
for an exact aggregate over a district's stations and a span of years, far too many numbers
to add up by hand:

* ``total``: the combined flow of all the district's stations over the years;
* ``peak``: the highest combined flow of the district's stations in any one of the years;
* ``range``: the largest minus the smallest station total over the years.

The model must search for the district, open its page, follow each station's link, bring
the right rows of each table on screen, and add them up exactly (python). Difficulty knobs:

| knob | meaning | d1 | d2 | d3 | d4 | d5 |
|---|---|---|---|---|---|---|
| ``stations`` | stations per district (tables to read) | 3 | 4 | 5 | 6 | 7 |
| ``years`` | years the question spans (rows per table) | 6 | 8 | 10 | 12 | 14 |
| ``kinds`` | question kinds drawn from | total | +peak | +range | all | all |
| ``deep_tables`` | share of station tables past the first view (scroll or find) | 0 | 0.5 | 0.5 | 1 | 1 |
| ``split_records`` | share of tables split, later years on a second page | 0 | 0 | 0.5 | 0.5 | 1 |
| ``continued_lists`` | the district's station list goes on on a second page | no | no | yes | yes | yes |
| ``distractors`` | near-namesake districts per district (other stations) | 0 | 1 | 1 | 2 | 2 |

Split hygiene as elsewhere: train and test worlds come from different seeds, and each
question belongs to one split by a stable hash of what it asks (sampling redraws until it
matches), so no test question is ever a train question. Task ids
(``research/v0/<knobs>/<split>/<seed>``) rebuild the task.
"""

from __future__ import annotations

import html
import random
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agent_envs.errors import UnknownTaskError
from agent_envs.oracle import register_oracle
from agent_envs.tasks.base import Split, Task, TaskSource
from agent_envs.tasks.splits import check_split, split_of, stable_int

__all__ = ["DIFFICULTIES", "KINDS", "ResearchTask", "ResearchTasks", "ResearchWorld",
           "Station", "answer_of"]

VERSION = "v0"
DOMAIN = "atlas.example"
FIRST_YEAR, N_YEARS = 1995, 20
KINDS = ("total", "peak", "range")
DIFFICULTIES: dict[int, dict[str, Any]] = {
    1: {"stations": 3, "years": 6, "kinds": ("total",), "deep_tables": 0.0,
        "split_records": 0.0, "continued_lists": False, "distractors": 0},
    2: {"stations": 4, "years": 8, "kinds": ("total", "peak"), "deep_tables": 0.5,
        "split_records": 0.0, "continued_lists": False, "distractors": 1},
    3: {"stations": 5, "years": 10, "kinds": KINDS, "deep_tables": 0.5,
        "split_records": 0.5, "continued_lists": True, "distractors": 1},
    4: {"stations": 6, "years": 12, "kinds": KINDS, "deep_tables": 1.0,
        "split_records": 0.5, "continued_lists": True, "distractors": 2},
    5: {"stations": 7, "years": 14, "kinds": KINDS, "deep_tables": 1.0,
        "split_records": 1.0, "continued_lists": True, "distractors": 2},
}
_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t",
           "th", "v", "w", "z", "vel", "mor", "tal", "ser", "cal")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou")
_CODAS = ("", "", "n", "r", "s", "l", "m", "th", "nd", "rk")
_STATION_KINDS = ("Gauge", "Weir", "Lock", "Bridge", "Mill", "Ford", "Sluice")
_FILLER = ("The gauge house was rebuilt after a flood and its instruments were replaced.",
           "Readings were taken by hand until an automatic recorder was installed.",
           "The river here runs through meadows that flood in most winters.",
           "A footpath follows the bank past the station to the next village.",
           "Local records describe the channel as wider before the embankments were raised.",
           "The catchment is mostly farmland, with woodland on the higher ground.",
           "Anglers use the pool below the weir in the summer months.",
           "Survey teams visit twice a year to check the rating curve.")
_WORLDS: OrderedDict[tuple[int, str], tuple[ResearchWorld, Any]] = OrderedDict()
_WORLDS_LOCK = threading.Lock()
_WORLDS_KEPT = 8


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) \
        + rng.choice(_CODAS)


def _near(rng: random.Random, name: str) -> str:
    """A near-namesake: one vowel changed (``Velmora`` -> ``Velmara``)."""
    spots = [i for i, c in enumerate(name) if c in "aeiou" and i > 0]
    i = rng.choice(spots) if spots else len(name) - 1
    return name[:i] + rng.choice([v for v in "aeiou" if v != name[i]]) + name[i + 1:]


def _url(title: str) -> str:
    return f"https://{DOMAIN}/wiki/{title.replace(' ', '_')}"


@dataclass(frozen=True, kw_only=True)
class Station:
    """A gauging station: its page's facts and flags."""

    name: str
    district: str
    river: str
    opened: int
    flows: dict[int, int]
    deep: bool = False
    split_at: int | None = None  # later years on the records page


@dataclass
class ResearchWorld:
    """A seeded world of districts and their stations (a pure function of seed and knobs)."""

    seed: int
    stations_per_district: int
    deep_tables: float
    split_records: float
    continued_lists: bool
    distractors: int
    base_districts: int = 6
    districts: dict[str, list[Station]] = field(default_factory=dict)
    main: list[str] = field(default_factory=list)  # districts questions ask about

    def __post_init__(self) -> None:
        rng = random.Random(stable_int("research-world", VERSION, self.seed))
        used: set[str] = set()

        def fresh(make: Any) -> str:
            for _ in range(1000):
                name = make()
                if name not in used:
                    used.add(name)
                    return name
            raise RuntimeError("no fresh name")  # pragma: no cover

        for _ in range(self.base_districts):
            base = fresh(lambda: _word(rng, 2).capitalize())
            self.main.append(base)
            names = [base] + [fresh(lambda b=base: _near(rng, b))
                              for _ in range(self.distractors)]
            for d in names:
                self.districts[d] = [self._station(rng, d, fresh)
                                     for _ in range(self.stations_per_district)]

    def _station(self, rng: random.Random, district: str, fresh: Any) -> Station:
        name = fresh(lambda: f"{_word(rng, 2).capitalize()} {rng.choice(_STATION_KINDS)}")
        flows = {FIRST_YEAR + i: rng.randrange(20_000, 999_999) for i in range(N_YEARS)}
        split = FIRST_YEAR + rng.randrange(6, N_YEARS - 5) \
            if rng.random() < self.split_records else None
        return Station(name=name, district=district, river=_word(rng, 2).capitalize(),
                       opened=rng.randrange(1900, 1990), flows=flows,
                       deep=rng.random() < self.deep_tables, split_at=split)

    # -- pages ----------------------------------------------------------------------

    def documents(self) -> list[tuple[str, str, str]]:
        """Every page as ``(url, title, html)``."""
        docs = []
        for district, stations in self.districts.items():
            docs.extend(self._district_pages(district, stations))
            for s in stations:
                docs.extend(self._station_pages(s))
        return docs

    def _district_pages(self, district: str, stations: list[Station]
                        ) -> list[tuple[str, str, str]]:
        esc = html.escape
        title = f"{district} District"
        items = [f'<li><a href="{_url(s.name)}">{esc(s.name)}</a> on the {esc(s.river)}</li>'
                 for s in stations]
        cut = (len(items) + 1) // 2 if self.continued_lists else len(items)
        more_title = f"{district} District stations (continued)"
        more = (f'<p>The list goes on: <a href="{_url(more_title)}">more stations of the '
                f'{esc(district)} District</a>.</p>' if cut < len(items) else "")
        page = (f"<html><head><title>{esc(title)}</title></head><body><h1>{esc(title)}</h1>"
                f"<p>The <b>{esc(district)} District</b> is a river district. It runs "
                f"{len(stations)} gauging stations that record the annual flow of its "
                f"rivers.</p><h2>Gauging stations</h2><ul>{''.join(items[:cut])}</ul>{more}"
                f"</body></html>")
        docs = [(_url(title), title, page)]
        if cut < len(items):
            docs.append((_url(more_title), more_title,
                         f"<html><head><title>{esc(more_title)}</title></head><body>"
                         f"<h1>{esc(more_title)}</h1><p>More gauging stations of the "
                         f'<a href="{_url(title)}">{esc(district)} District</a>:</p>'
                         f"<ul>{''.join(items[cut:])}</ul></body></html>"))
        return docs

    @staticmethod
    def _table(rows: list[tuple[int, int]]) -> str:
        body = "".join(f"<tr><td>{y}</td><td>{v:,}</td></tr>" for y, v in rows)
        return f"<table><tr><th>Year</th><th>Flow (ML)</th></tr>{body}</table>"

    def _station_pages(self, s: Station) -> list[tuple[str, str, str]]:
        esc = html.escape
        rng = random.Random(stable_int("station-page", self.seed, s.name))
        rows = sorted(s.flows.items())
        later = [r for r in rows if s.split_at is not None and r[0] > s.split_at]
        shown = [r for r in rows if r not in later]
        records_title = f"{s.name} later records"
        flow = (f"<h2>Annual flow</h2><p>Annual flow in megalitres (ML).</p>"
                f"{self._table(shown)}")
        if later:
            flow += (f'<p>Records from {s.split_at + 1} on are on the '
                     f'<a href="{_url(records_title)}">later records</a> page.</p>')
        prose = [f"<h2>{t}</h2><p>{' '.join(rng.choice(_FILLER) for _ in range(n))}</p>"
                 for t, n in (("History", 3), ("Site", 3))]
        if s.deep:
            prose += [f"<h2>{t}</h2><p>{' '.join(rng.choice(_FILLER) for _ in range(14))}</p>"
                      for t in ("Early readings", "Floods", "Instruments", "Surveys")]
        page = (f"<html><head><title>{esc(s.name)}</title></head><body><h1>{esc(s.name)}</h1>"
                f"<p><b>{esc(s.name)}</b> is a gauging station on the {esc(s.river)} in the "
                f'<a href="{_url(s.district + " District")}">{esc(s.district)} District</a>, '
                f"opened in {s.opened}.</p>" + "".join(prose) + flow + "</body></html>")
        docs = [(_url(s.name), s.name, page)]
        if later:
            docs.append((_url(records_title), records_title,
                         f"<html><head><title>{esc(records_title)}</title></head><body>"
                         f"<h1>{esc(records_title)}</h1><p>Annual flow of "
                         f'<a href="{_url(s.name)}">{esc(s.name)}</a> in megalitres (ML), '
                         f"from {s.split_at + 1}.</p>{self._table(later)}</body></html>"))
        return docs


def answer_of(kind: str, stations: list[Station], years: tuple[int, int]) -> int:
    """The exact answer of a question of ``kind`` over ``stations`` and ``years``."""
    span = range(years[0], years[1] + 1)
    if kind == "total":
        return sum(s.flows[y] for s in stations for y in span)
    if kind == "peak":
        return max(sum(s.flows[y] for s in stations) for y in span)
    if kind == "range":
        totals = [sum(s.flows[y] for y in span) for s in stations]
        return max(totals) - min(totals)
    raise ValueError(f"unknown research question kind {kind!r}; kinds: {', '.join(KINDS)}")


_QUESTIONS = {
    "total": "what was the combined annual flow, in megalitres, of all of the district's "
             "gauging stations over the years {a} to {b} inclusive (every station, every year)?",
    "peak": "in the years {a} to {b} inclusive, what was the highest combined annual flow, in "
            "megalitres, of all of the district's gauging stations in a single year?",
    "range": "taking each of the district's gauging stations' total flow over the years {a} "
             "to {b} inclusive, what is the largest of these totals minus the smallest, in "
             "megalitres?",
}


@dataclass(frozen=True, kw_only=True)
class ResearchTask(Task):
    """A research question (see the module docstring).

    Attributes:
        district: The district the question is about.
        kind: ``total``, ``peak`` or ``range``.
        years: The first and last year the question spans.
    """

    district: str = ""
    kind: str = "total"
    years: tuple[int, int] = (FIRST_YEAR, FIRST_YEAR)


class ResearchTasks(TaskSource):
    """Unlimited seeded research questions (see the module docstring for the knobs).

    Args:
        difficulty: 1..5, a preset of the knobs.
        stations, years, kinds, deep_tables, split_records, continued_lists, distractors:
            Override one knob of the preset.
        questions_per_world: Consecutive seeds share a world (its index is built once).
        cache_dir: Where world indexes are saved (None: in memory only).

    Raises:
        ValueError: a knob out of its range.
    """

    name = "research"

    def __init__(self, *, difficulty: int = 1, stations: int | None = None,
                 years: int | None = None, kinds: tuple[str, ...] | None = None,
                 deep_tables: float | None = None, split_records: float | None = None,
                 continued_lists: bool | None = None, distractors: int | None = None,
                 questions_per_world: int = 32, cache_dir: str | None = None) -> None:
        if isinstance(difficulty, bool) or difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be an int from 1 to {max(DIFFICULTIES)}, got "
                             f"{difficulty!r}; pass e.g. difficulty=2")
        k = dict(DIFFICULTIES[difficulty])
        given = {"stations": stations, "years": years, "kinds": kinds,
                 "deep_tables": deep_tables, "split_records": split_records,
                 "continued_lists": continued_lists, "distractors": distractors}
        k.update({n: v for n, v in given.items() if v is not None})
        if not 2 <= int(k["stations"]) <= 12:
            raise ValueError(f"stations must be 2..12, got {k['stations']!r}")
        if not 2 <= int(k["years"]) <= N_YEARS:
            raise ValueError(f"years must be 2..{N_YEARS}, got {k['years']!r}")
        bad = [x for x in k["kinds"] if x not in KINDS] or ([] if k["kinds"] else ["(none)"])
        if bad:
            raise ValueError(f"kinds must name some of {', '.join(KINDS)}, got {bad[0]!r}")
        for name in ("deep_tables", "split_records"):
            if not 0.0 <= float(k[name]) <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {k[name]!r}")
        if not 0 <= int(k["distractors"]) <= 4:
            raise ValueError(f"distractors must be 0..4, got {k['distractors']!r}")
        if int(questions_per_world) < 1:
            raise ValueError(f"questions_per_world must be >= 1, got {questions_per_world!r}")
        k["kinds"] = tuple(k["kinds"])
        #: The preset these knobs are (0 when a knob was set to something no preset has).
        self.difficulty = next((d for d, p in DIFFICULTIES.items() if p == k), 0)
        self.knob_values = k
        self.questions_per_world = int(questions_per_world)
        self.cache_dir = cache_dir
        self._question_cache: dict[tuple[int, str], list[tuple[str, str, int]]] = {}

    @property
    def knobs(self) -> str:
        """The knobs as they appear in task ids."""
        k = self.knob_values
        return (f"s{k['stations']}.y{k['years']}.k{''.join(x[0] for x in k['kinds'])}"
                f".d{round(k['deep_tables'] * 100)}.r{round(k['split_records'] * 100)}"
                f".c{int(bool(k['continued_lists']))}.x{k['distractors']}"
                f".q{self.questions_per_world}")

    def __repr__(self) -> str:
        return f"ResearchTasks(difficulty={self.difficulty}, knobs={self.knobs!r})"

    def world(self, split: Split, index: int) -> ResearchWorld:
        """World number ``index`` of ``split`` (cached process-wide, the last eight)."""
        seed = stable_int("research-world", VERSION, split, index, self.knobs)
        key = (seed, self.knobs)
        with _WORLDS_LOCK:
            if key in _WORLDS:
                _WORLDS.move_to_end(key)
                return _WORLDS[key][0]
        k = self.knob_values
        world = ResearchWorld(seed=seed, stations_per_district=int(k["stations"]),
                              deep_tables=float(k["deep_tables"]),
                              split_records=float(k["split_records"]),
                              continued_lists=bool(k["continued_lists"]),
                              distractors=int(k["distractors"]))
        with _WORLDS_LOCK:
            _WORLDS.setdefault(key, (world, None))
            while len(_WORLDS) > _WORLDS_KEPT:
                _WORLDS.popitem(last=False)
            return _WORLDS[key][0]

    def _questions(self, world: ResearchWorld, split: Split) -> list[tuple[str, str, int]]:
        """Every question of ``world`` that belongs to ``split``, in a seeded order
        (consecutive seeds ask different questions)."""
        cached = self._question_cache.get((world.seed, split))
        if cached is not None:
            return cached
        span = int(self.knob_values["years"])
        out = []
        for district in world.main:
            for kind in self.knob_values["kinds"]:
                for first in range(FIRST_YEAR, FIRST_YEAR + N_YEARS - span + 1):
                    params = {"world": world.seed, "district": district, "kind": kind,
                              "years": [first, first + span - 1]}
                    if split_of("research", params, VERSION, test_fraction=0.5) == split:
                        out.append((district, kind, first))
        random.Random(stable_int("research-order", world.seed)).shuffle(out)
        if len(self._question_cache) > 64:
            self._question_cache.clear()
        self._question_cache[(world.seed, split)] = out
        return out

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed`` in ``split``: a pure function of the seed, split and knobs."""
        split = check_split(split)
        seed = int(seed)
        index, q = divmod(seed, self.questions_per_world)
        world = self.world(split, index)
        span = int(self.knob_values["years"])
        questions = self._questions(world, split)
        district, kind, first = questions[q % len(questions)]
        years = (first, first + span - 1)
        stations = world.districts[district]
        prompt = (f"In the atlas of river districts, the {district} District runs gauging "
                  f"stations that record the annual flow of its rivers. According to the "
                  f"stations' pages, " + _QUESTIONS[kind].format(a=years[0], b=years[1]))
        return ResearchTask(
            id=f"research/{VERSION}/{self.knobs}/{split}/{seed}", prompt=prompt,
            answer=str(answer_of(kind, stations, years)), answer_kind="int", split=split,
            difficulty=self.difficulty, source=self.name, district=district, kind=kind,
            years=years, meta={"world_seed": world.seed, "world_index": index, "kind": kind,
                               "stations": len(stations), "years": span,
                               "knobs": self.knobs})

    @classmethod
    def from_knobs(cls, knobs: str) -> ResearchTasks:
        """The source whose :attr:`knobs` are ``knobs`` (as in a task id).

        Raises:
            UnknownTaskError: ``knobs`` is not such a string.
        """
        m = re.fullmatch(r"s(\d+)\.y(\d+)\.k([tpr]+)\.d(\d+)\.r(\d+)\.c([01])\.x(\d+)"
                         r"\.q(\d+)", knobs)
        if m is None:
            raise UnknownTaskError(f"research task knobs {knobs!r} are malformed; they look "
                                   f"like {ResearchTasks().knobs!r}")
        s, y, k, d, r, c, x, q = m.groups()
        kinds = tuple(kind for kind in KINDS if kind[0] in k)
        try:
            return cls(stations=int(s), years=int(y), kinds=kinds, deep_tables=int(d) / 100,
                       split_records=int(r) / 100, continued_lists=c == "1",
                       distractors=int(x), questions_per_world=int(q))
        except ValueError as e:
            raise UnknownTaskError(f"research task knobs {knobs!r}: {e}") from None

    def get(self, task_id: str) -> Task:
        """Rebuild a task from its id (whatever its knobs: a source with them is made).

        Raises:
            UnknownTaskError: malformed id.
        """
        parts = str(task_id).split("/")
        if (len(parts) != 5 or parts[0] != "research" or parts[1] != VERSION
                or parts[3] not in ("train", "test") or not parts[4].isdigit()):
            raise UnknownTaskError(f"malformed research task id {task_id!r}; expected "
                                   f"'research/{VERSION}/<knobs>/<train|test>/<seed>', e.g. "
                                   f"'research/{VERSION}/{self.knobs}/train/0'")
        source = self if parts[2] == self.knobs else self.from_knobs(parts[2])
        return source.sample(int(parts[4]), parts[3])  # type: ignore[arg-type]

    def backend_for(self, task: Task) -> Any:
        """The corpus backend of the task's world (built on first use, then cached)."""
        from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, Document

        source = self if task.meta["knobs"] == self.knobs \
            else self.from_knobs(task.meta["knobs"])
        world = source.world(task.split, int(task.meta["world_index"]))
        key = (world.seed, source.knobs)
        with _WORLDS_LOCK:
            backend = _WORLDS.get(key, (world, None))[1]
        if backend is None:
            docs = [Document(url=u, title=t, html=h) for u, t, h in world.documents()]
            corpus = Corpus(docs, name="atlas",
                            fingerprint=f"research-{VERSION}-{world.seed}-{source.knobs}")
            backend = CorpusBackend(corpus, cache_dir=self.cache_dir,
                                    persist=self.cache_dir is not None)
            with _WORLDS_LOCK:
                _WORLDS[key] = (world, backend)
                while len(_WORLDS) > _WORLDS_KEPT:
                    _WORLDS.popitem(last=False)
        return backend


def agent_oracle(**kwargs: Any) -> Any:
    """The family's oracle (:class:`~agent_envs.envs.agent.oracle.AgentOracle`), imported
    when first asked for: python-tool imports this family, and must not need the functions
    family that the oracle's data-ops half imports."""
    from agent_envs.envs.agent.oracle import AgentOracle

    return AgentOracle(**kwargs)


register_oracle(ResearchTask, agent_oracle)
