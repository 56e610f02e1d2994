"""Pages as gpt-oss's browser shows them: HTML in, numbered-line text with link ids out.

The conversion follows OpenAI's reference browser tool (``gpt_oss/tools/simple_browser``),
which is the specification: the tests hold our text byte-identical to its text. The steps:

1. Drop characters of Unicode plane 1 (lxml's HTML parser rejects some of them) and swap the
   characters the tool uses as markup (``【`` ``】`` ``◼``, zero-width spaces) for look-alikes.
2. Parse with ``lxml.html``; the title is the caller's, else ``<title>``, else the domain.
3. Every ``<a href>`` with visible text becomes ``【id†text】`` (same domain) or
   ``【id†text†domain】`` (elsewhere); ids count distinct absolute URLs in order of first
   appearance; ``#fragment`` links become their text; ``mailto:``/``javascript:`` links and
   links without text stay as they are (``html2text`` then drops the tag).
4. ``<img>`` becomes ``[Image N: alt]`` (or ``[Image N]``); ``<math>`` is removed.
5. ``html2text`` (links, images, emphasis and tables off, no wrapping, Unicode kept; its
   Markdown escaping stays on, as in the reference, whose attempt to turn it off patches a
   module attribute html2text does not read) renders the tree as text; blank lines are
   squeezed and link markers are moved right past the whitespace that follows them.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlparse

__all__ = [
    "Page", "Snippet", "domain_of", "page_from_html", "page_from_text", "search_results_html",
]

# Characters of the Supplementary Multilingual Plane only (U+10000..U+1FFFF), as the reference.
_PLANE1 = re.compile("[\U00010000-\U0001FFFF]")
_LOOKALIKES = {"【": "〖", "】": "〗", "◼": "◾", "\u200b": ""}
_LOOKALIKE_RE = re.compile("|".join(map(re.escape, _LOOKALIKES)))
_SUP = re.compile(r"<sup( [^>]*)?>([\w\-]+)</sup>")
_SUB = re.compile(r"<sub( [^>]*)?>([\w\-]+)</sub>")
# A run of tags glued between two word characters ("a</td><td>b") gets a space before it.
_GLUED_TAGS = re.compile(r"(?<=\w)((<[^>]*>)+)(?=\w)")
_ANCHOR_THEN_SPACE = re.compile(r"(【\@[^】]+】)(\s+)")
_BLANKISH_LINE = re.compile(r"^\s+$", flags=re.MULTILINE)
_MANY_NEWLINES = re.compile(r"\n(\s*\n)+")
_IMAGE_MARKER = re.compile(r"【\@([^】]+)】")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, kw_only=True)
class Snippet:
    """Where a link on a ``find`` results page points into its page.

    Attributes:
        url: The page the match is on.
        text: The lines shown for the match.
        title: ``#<match index>``.
        line_idx: The wrapped line the match starts at.
    """

    url: str
    text: str
    title: str
    line_idx: int | None = None


@dataclass(frozen=True, kw_only=True)
class Page:
    """A page the browser can display.

    Attributes:
        url: Its address ("" for search results pages, as in the reference).
        title: Shown in the header ``[cursor] title (url)``.
        text: The page as text, link markers included, before line wrapping.
        urls: Link id (a decimal string) -> absolute URL.
        snippets: Only on ``find`` results pages: link id -> where the match is. A page with
            snippets cannot be searched with ``find`` again (the reference's rule).
    """

    url: str
    title: str
    text: str
    urls: dict[str, str] = field(default_factory=dict)
    snippets: dict[str, Snippet] | None = None


def domain_of(url: str) -> str:
    """The host part of ``url``; a bare domain is returned as is.

    As in the reference, a string that does not contain ``http`` is read as if it had an
    ``http://`` scheme, so ``domain_of("example.com/x")`` is ``example.com``.
    """
    if "http" not in url:
        url = "http://" + url
    return urlparse(url).netloc


def _clean_source(html: str) -> str:
    html = _PLANE1.sub("", html)
    return _LOOKALIKE_RE.sub(lambda m: _LOOKALIKES[m.group(0)], html)


def _visible_text(node: object) -> str:
    text = " ".join(node.itertext())  # type: ignore[attr-defined]
    return _SPACES.sub(" ", text.replace("\n", " "))


def _splice(node: object, text: str) -> None:
    """Put ``text`` (plus the node's tail) where ``node`` was, and remove the node."""
    parent = node.getparent()  # type: ignore[attr-defined]
    before = node.getprevious()  # type: ignore[attr-defined]
    tail = node.tail or ""  # type: ignore[attr-defined]
    if before is None:
        parent.text = (parent.text or "") + text + tail
    else:
        before.tail = (before.tail or "") + text + tail
    parent.remove(node)


def _rewrite_links(root: object, page_url: str) -> dict[str, str]:
    here = domain_of(page_url)
    ids: dict[str, str] = {}  # url -> id
    for anchor in root.findall(".//a[@href]"):  # type: ignore[attr-defined]
        href = anchor.attrib["href"]
        if href.startswith(("mailto:", "javascript:")):
            continue
        label = _visible_text(anchor).replace("†", "‡")
        if not _IMAGE_MARKER.sub("", label):
            continue  # no text: an image link, left for the image pass
        if href.startswith("#"):
            _splice(anchor, label)
            continue
        try:
            target = urljoin(page_url, href)
            target_domain = domain_of(target)
        except ValueError:  # urllib rejects some malformed hosts (bad IPv6 brackets, ports)
            target_domain = ""
        if not target_domain:
            continue
        target = re.sub(r"arxiv.org", "ar5iv.org", target)
        link_id = ids.setdefault(target, str(len(ids)))
        marker = (f"【{link_id}†{label}】" if target_domain == here
                  else f"【{link_id}†{label}†{target_domain}】")
        _splice(anchor, marker)
    return {link_id: url for url, link_id in ids.items()}


def _replace_images(root: object) -> None:
    for n, img in enumerate(root.findall(".//img")):  # type: ignore[attr-defined]
        name = img.get("alt", img.get("title"))
        _splice(img, f"[Image {n}: {name}]" if name else f"[Image {n}]")


def _html_to_text(markup: str) -> str:
    import html2text

    markup = _SUP.sub(r"^{\2}", markup)
    markup = _SUB.sub(r"_{\2}", markup)
    markup = _GLUED_TAGS.sub(r" \1", markup)
    converter = html2text.HTML2Text()
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_tables = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    converter.body_width = 0
    return converter.handle(markup).strip()


def _tidy(text: str) -> str:
    text = _ANCHOR_THEN_SPACE.sub(lambda m: m.group(2) + m.group(1), text)
    text = _BLANKISH_LINE.sub("", text)
    return _MANY_NEWLINES.sub("\n\n", text)


def page_from_html(html: str, url: str, title: str | None = None, *,
                   display_urls: bool = False) -> Page:
    """Convert an HTML document into a :class:`Page`, as the reference tool does.

    Args:
        html: The document (a fragment is fine).
        url: Its address: relative links resolve against it, and links to other domains
            show the domain.
        title: The title to show; when empty, the ``<title>`` element, else the domain.
        display_urls: Start the text with ``"\\nURL: {url}\\n"`` (the reference's backends do
            this for every page they fetch and for search results).

    Raises:
        lxml.etree.ParserError: The document is empty (the browser shows this as a fetch
            error, as the reference does).
    """
    import lxml.etree
    import lxml.html

    root = lxml.html.fromstring(_clean_source(html))
    if title:
        shown_title = title
    else:
        title_node = root.find(".//title")
        if title_node is not None:
            shown_title = title_node.text or ""
        else:
            shown_title = domain_of(url) if url else ""
    urls = _rewrite_links(root, url)
    _replace_images(root)
    for node in root.findall(".//math"):
        node.getparent().remove(node)
    text = _tidy(_html_to_text(lxml.etree.tostring(root, encoding="UTF-8").decode()))
    prefix = f"\nURL: {url}\n" if display_urls else ""
    return Page(url=url, title=shown_title, text=prefix + text, urls=urls)


def page_from_text(text: str, url: str, title: str, *, display_urls: bool = True) -> Page:
    """A plain-text (or Markdown) document as a :class:`Page`: no links, text kept as is
    except for the characters the browser reserves for its own markup."""
    prefix = f"\nURL: {url}\n" if display_urls else ""
    return Page(url=url, title=title, text=prefix + _clean_source(text), urls={})


def search_results_html(hits: list[tuple[str, str, str]], *, escape: bool = False) -> str:
    """The HTML page the reference's search backends build from ``(title, url, summary)``.

    The reference pastes titles and summaries into the markup unescaped (its providers
    return plain text); ``escape=True`` escapes them first, which renders the same text for
    ordinary strings and keeps ``<`` and ``&`` in titles from being read as markup.
    """
    def esc(s: str, quote: bool = False) -> str:
        return html_lib.escape(s, quote=quote) if escape else s

    items = "".join(f"<li><a href='{esc(url, True)}'>{esc(title)}</a> {esc(summary)}</li>"
                    for title, url, summary in hits)
    return f"""
<html><body>
<h1>Search Results</h1>
<ul>
{items}
</ul>
</body></html>
"""
