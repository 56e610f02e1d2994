"""Judging a browsing answer: exact match and F1 (SQuAD normalisation, aliases), citations
resolved to what the model actually saw, and evidence-page recall.

* The answer is the text after the last ``Answer:`` (to the end of its line), else the last
  ``\\boxed{}``, else the last "answer is X", else the whole final message; citations are
  removed from it first.
* EM / F1 follow the SQuAD evaluation script: lower case, punctuation and the articles
  ``a``/``an``/``the`` removed, whitespace collapsed; the best score over the answer and its
  aliases counts.
* Each citation ``【cursor†Lx】`` / ``【cursor†Lx-Ly】`` is resolved to the page the model
  had at that cursor. It is flagged when the cursor never existed (``unknown_cursor``),
  when it is a search or find results page rather than an opened page (``not_a_page``),
  when lines ``x..y`` were never on screen for that page (``not_displayed``), or when they
  do not contain the evidence text of that page (``no_evidence``; for pages that are not
  evidence pages, the answer itself counts as evidence). Otherwise it is ``ok``.
* Evidence recall: the share of the task's evidence pages the model opened.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_envs.envs.browser.tool import View
from agent_envs.envs.browser.view import strip_links
from agent_envs.tasks.base import Verdict

__all__ = ["CITATION_RE", "VERIFIER_VERSION", "Judgement", "extract_browser_answer",
           "f1_score", "judge", "normalize_answer", "verdict", "verify"]

#: Bump whenever a verdict can change (extraction, normalisation, citation checks); eval
#: suites pin it.
VERIFIER_VERSION = "browser-em-f1-1"

CITATION_RE = re.compile(r"【(?P<cursor>\d+)†L(?P<start>\d+)(?:-L?(?P<end>\d+))?】")
_ANY_MARKER = re.compile(r"【[^】]*】")
_ANSWER_LINE = re.compile(r"(?im)^\W*(?:final\s+)?answer\s*[:：]\s*(.+)$")
_ANSWER_PHRASE = re.compile(r"(?i)answer\s+is\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """SQuAD token F1 of two answers."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def extract_browser_answer(final_text: str) -> str | None:
    """The answer a final message commits to (citations removed), or None if it is empty."""
    from agent_envs.tasks.answers import last_boxed

    text = _ANY_MARKER.sub("", final_text)
    lines = _ANSWER_LINE.findall(text)
    if lines:
        answer = lines[-1]
    elif (boxed := last_boxed(text)) is not None:
        answer = boxed
    elif phrases := _ANSWER_PHRASE.findall(text):
        answer = phrases[-1]
    else:
        answer = text
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"[\s.]+$", "", answer)
    return answer or None


def _squash(text: str) -> str:
    return " ".join(strip_links(text).casefold().split())


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """Everything the verifier found (goes into ``info["browser"]``)."""

    answer: str | None
    em: bool
    f1: float
    citations: list[dict[str, Any]] = field(default_factory=list)
    citation_precision: float = 0.0
    cited_evidence_pages: float = 0.0
    evidence_recall: float = 0.0
    pages_opened: list[str] = field(default_factory=list)

    def as_info(self) -> dict[str, Any]:
        return {"answer": self.answer, "em": self.em, "f1": round(self.f1, 6),
                "citations": self.citations, "citation_precision": self.citation_precision,
                "cited_evidence_pages": self.cited_evidence_pages,
                "evidence_recall": self.evidence_recall, "pages_opened": self.pages_opened,
                "flagged": [c for c in self.citations if c["status"] != "ok"]}


def _resolve(cursor: int, start: int, end: int, views: Sequence[View],
             evidence: dict[str, list[str]], golds: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"cursor": cursor, "lines": [start, end], "url": None}
    view = next((v for v in views if v.cursor == cursor), None)
    if view is None:
        return {**out, "status": "unknown_cursor"}
    out["url"] = view.page.url
    if view.kind != "page":
        return {**out, "status": "not_a_page"}
    shown: set[int] = set()
    for v in views:
        if v.page.url == view.page.url and v.kind == "page":
            shown.update(range(v.first, v.last + 1))
    if end < start or not set(range(start, end + 1)) <= shown:
        return {**out, "status": "not_displayed"}
    cited = _squash("".join(view.lines[start: end + 1]))
    wanted = evidence.get(view.page.url) or list(golds)
    if not any(_squash(w) in cited for w in wanted if w.strip()):
        return {**out, "status": "no_evidence"}
    return {**out, "status": "ok"}


def judge(final_text: str, answer: str, aliases: Sequence[str],
          evidence: Sequence[dict[str, str]], views: Sequence[View]) -> Judgement:
    """Judge ``final_text`` against the gold answer and what the browser showed.

    Args:
        final_text: The model's final message.
        answer: The gold answer.
        aliases: Other accepted answers.
        evidence: The task's evidence items (``url`` and ``text``).
        views: What each cursor showed (``BrowserTool.views``).
    """
    golds = [answer, *aliases]
    extracted = extract_browser_answer(final_text)
    em = extracted is not None and any(normalize_answer(extracted) == normalize_answer(g)
                                       for g in golds)
    f1 = max((f1_score(extracted, g) for g in golds), default=0.0) if extracted else 0.0
    by_url: dict[str, list[str]] = {}
    for item in evidence:
        if item.get("text", "").strip():
            by_url.setdefault(item["url"], []).append(item["text"])
        else:
            by_url.setdefault(item["url"], [])
    citations = []
    for m in CITATION_RE.finditer(final_text):
        start = int(m.group("start"))
        end = int(m.group("end")) if m.group("end") is not None else start
        citations.append(_resolve(int(m.group("cursor")), start, end, views, by_url, golds))
    ok = [c for c in citations if c["status"] == "ok"]
    opened = []
    for v in views:
        if v.kind == "page" and v.page.url not in opened:
            opened.append(v.page.url)
    evidence_urls = list(by_url)
    recall = (sum(u in opened for u in evidence_urls) / len(evidence_urls)
              if evidence_urls else 0.0)
    cited_pages = {c["url"] for c in ok}
    cited_evidence = (sum(u in cited_pages for u in evidence_urls) / len(evidence_urls)
                      if evidence_urls else 0.0)
    return Judgement(answer=extracted, em=bool(em), f1=float(f1), citations=citations,
                     citation_precision=len(ok) / len(citations) if citations else 0.0,
                     cited_evidence_pages=cited_evidence, evidence_recall=recall,
                     pages_opened=opened)


def verdict(judgement: Judgement, answer: str) -> Verdict:
    """The env's verdict from a judgement: correct when the answer matches exactly (EM)."""
    if judgement.em:
        return Verdict(correct=True, extracted=judgement.answer, reason="match")
    reason = (f"expected {answer!r}, got {judgement.answer!r}" if judgement.answer
              else "no answer found")
    return Verdict(correct=False, extracted=judgement.answer, reason=reason)


def verify(task: Any, final_text: str, views: Sequence[View]) -> tuple[Verdict, Judgement]:
    """Judge ``final_text`` as the answer to a browser task (pure), given the pages the model
    saw (``views``): the verdict and the full judgement (F1, citations, evidence recall)."""
    j = judge(final_text, task.answer, getattr(task, "aliases", ()),
              getattr(task, "evidence", ()), views)
    return verdict(j, task.answer), j
