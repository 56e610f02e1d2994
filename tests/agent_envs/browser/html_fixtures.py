"""Real-world-like HTML pages for the differential tests (written here, seeded, no network).

``fixture_pages()`` returns ``{url: (html, title)}`` with more than 50 pages: site chrome
(navigation, footers, cookie banners), code blocks, tables, lists, non-ASCII text
(accents, CJK, Arabic, emoji, the tool's own 【】 markers), images, math, sup/sub,
relative/absolute/fragment/mailto/javascript/arXiv links, and pages far past 1024 tokens.
"""

from __future__ import annotations

import random

_WORDS = ("river", "stone", "archive", "signal", "lantern", "harbor", "meadow", "copper",
          "ledger", "orbit", "violet", "quarry", "beacon", "thistle", "marble", "cipher",
          "glacier", "falcon", "pepper", "saddle", "tundra", "vellum", "anchor", "bramble",
          "cobalt", "dynamo", "ember", "fjord", "garnet", "hollow", "indigo", "juniper",
          "kestrel", "lichen", "mosaic", "nectar", "oracle", "prism", "quill", "russet", "sable",
          "tinder", "umber", "vortex", "willow", "the", "of", "and", "a", "to", "in", "is",
          "was", "for", "on", "with", "as", "by", "that", "from", "at", "its")
_NON_ASCII = ["Zürich", "São Paulo", "Kraków", "Reykjavík", "東京都", "北京", "서울",
              "القاهرة", "Ελλάδα", "Москва", "naïve café", "œuvre", "Ærø", "Đà Nẵng",
              "emoji 🚀 rocket", "math ∑ ∫ ≤ ≥", "dash — and – ‘quotes’", "【bracket】 text",
              "zero\u200bwidth", "◼ square", "dagger † sign", "fullwidth ＡＢＣ"]
_DOMAINS = ["example.com", "docs.example.org", "news.example.net", "wiki.example.com"]


def _sentence(rng: random.Random, n: int | None = None) -> str:
    n = n or rng.randint(6, 22)
    words = [rng.choice(_WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        words[rng.randrange(n)] = rng.choice(_NON_ASCII)
    return " ".join(words).capitalize() + "."


def _para(rng: random.Random, k: int | None = None) -> str:
    return " ".join(_sentence(rng) for _ in range(k or rng.randint(2, 6)))


def _nav(rng: random.Random, domain: str) -> str:
    items = "".join(f'<li><a href="/{w}">{w.title()}</a></li>'
                    for w in rng.sample(_WORDS[:40], 6))
    return (f'<header><nav class="top"><a href="/"><img src="/logo.png" alt="{domain} logo">'
            f'</a><ul>{items}</ul><a href="#main">Skip to content</a>'
            f'<a href="javascript:void(0)">Menu</a></nav></header>')


def _footer(rng: random.Random) -> str:
    return ('<footer><p>© 2024 Example Inc. <a href="mailto:info@example.com">Contact</a> | '
            '<a href="https://twitter.com/example">Twitter</a> | '
            '<a href="/privacy">Privacy</a></p>'
            '<div class="cookie">We use cookies. <button>Accept</button></div></footer>')


def _table(rng: random.Random, rows: int) -> str:
    head = "".join(f"<th>{rng.choice(_WORDS).title()}</th>" for _ in range(4))
    body = "".join(
        "<tr>" + "".join(f"<td>{rng.choice([str(rng.randint(0, 9999)), rng.choice(_WORDS), rng.choice(_NON_ASCII)])}</td>"
                         for _ in range(4)) + "</tr>"
        for _ in range(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(rng: random.Random) -> str:
    lines = [f"def {rng.choice(_WORDS)}_{i}(x, y=2):\n    return x ** y  # {rng.choice(_WORDS)}"
             for i in range(rng.randint(2, 6))]
    code = "\n\n".join(lines).replace("<", "&lt;")
    return (f"<p>Example with <code>inline_code()</code> and a block:</p>"
            f"<pre><code class=\"language-python\">{code}\n\tindented\twith\ttabs</code></pre>")


def _links(rng: random.Random, domain: str) -> str:
    kinds = [
        lambda: f'<a href="/wiki/{rng.choice(_WORDS)}">{rng.choice(_WORDS)}</a>',
        lambda: f'<a href="https://{rng.choice(_DOMAINS)}/p/{rng.randint(1, 99)}">'
                f'{rng.choice(_WORDS)} {rng.choice(_WORDS)}</a>',
        lambda: f'<a href="../up/{rng.choice(_WORDS)}.html">relative <b>bold</b> link</a>',
        lambda: f'<a href="#sec{rng.randint(1, 5)}">jump to section</a>',
        lambda: f'<a href="https://arxiv.org/abs/2401.{rng.randint(10000, 99999)}">paper</a>',
        lambda: '<a href="https://example.com/same">same link</a>',
        lambda: f'<a href="//cdn.{domain}/x">protocol relative</a>',
        lambda: '<a href="/dagger">A†B dagger</a>',
        lambda: '<a href="/empty"> </a>',
        lambda: '<a href="/img"><img src="a.png" alt="linked image"></a>',
        lambda: '<a name="anchor-only">no href</a>',
        lambda: '<a href="http://[bad">broken</a>',
    ]
    return " ".join(rng.choice(kinds)() for _ in range(rng.randint(3, 9)))


def _article(rng: random.Random, url: str, sections: int, title_tag: bool = True) -> str:
    domain = url.split("/")[2]
    parts = ["<html><head><meta charset='utf-8'>"
             + (f"<title>{rng.choice(_WORDS).title()} – {domain}</title>" if title_tag else "")
             + "<style>body{color:red}</style><script>var x = '<b>';</script></head><body>",
             _nav(rng, domain), f"<main id='main'><h1>{_sentence(rng, 4)}</h1>"]
    for s in range(sections):
        parts.append(f"<h2 id='sec{s}'>{_sentence(rng, 3)}</h2><p>{_para(rng)} {_links(rng, domain)}</p>")
        roll = rng.random()
        if roll < 0.2:
            parts.append(_table(rng, rng.randint(2, 8)))
        elif roll < 0.35:
            parts.append(_code(rng))
        elif roll < 0.5:
            items = "".join(f"<li>{_sentence(rng, 5)}</li>" for _ in range(rng.randint(2, 6)))
            parts.append(f"<ol>{items}</ol><ul>{items}</ul>")
        elif roll < 0.6:
            parts.append(f"<blockquote>{_para(rng, 2)}</blockquote><p>1. Not a list but "
                         f"escaped. * star - dash + plus</p>")
        elif roll < 0.7:
            parts.append("<p>Water is H<sub>2</sub>O and E=mc<sup>2</sup>; "
                         "<math><mi>x</mi></math> removed math tail. "
                         "<img src='p.png' title='titled image'> <img src='q.png' alt=''> "
                         "<img src='r.png'></p>")
        elif roll < 0.8:
            parts.append(f"<dl><dt>{rng.choice(_WORDS)}</dt><dd>{_sentence(rng)}</dd></dl>"
                         f"<p>A very long token: {'x' * rng.randint(70, 200)} and "
                         f"https://example.com/{'a/' * 50}</p>")
        elif roll < 0.9:
            parts.append(f"<div><span>{_sentence(rng)}</span><span>{_sentence(rng)}</span>"
                         f"<br><br><br><hr><p>   spaced    out   </p></div>")
        else:
            parts.append(f"<p>{'　'.join(rng.sample(_NON_ASCII, 5))}</p>"
                         f"<p lang='ar' dir='rtl'>هذا نص عربي للاختبار</p>")
    parts.append("</main>" + _footer(rng) + "</body></html>")
    return "".join(parts)


def fixture_pages(seed: int = 0, n_generated: int = 48) -> dict[str, tuple[str, str]]:
    """``{url: (html, title)}``: handwritten edge cases plus seeded generated articles."""
    rng = random.Random(seed)
    pages: dict[str, tuple[str, str]] = {
        "https://example.com/": (
            ("<html><head><title>Example Domain</title></head><body><div><h1>Example Domain"
            "</h1><p>This domain is for use in illustrative examples in documents.</p><p>"
            "<a href='https://www.iana.org/domains/example'>More information...</a></p>"
            "</div></body></html>"), ""),
        "https://example.com/empty-body": (("<html><head><title>Nothing</title></head><body>"
                                           "</body></html>"), ""),
        "https://example.com/fragment": ("Just some text with no tags at all, & an ampersand",
                                         "Fragment"),
        "https://example.com/no-title": (("<html><body><p>No title element here.</p></body>"
                                         "</html>"), ""),
        "https://example.com/markers": (
            ("<p>The tool's markers 【0†fake】 and ◼ and zero\u200bwidth and † dagger.</p>"
            "<p>Emoji 🚀🎉 are dropped; 𠀀 (plane 2) is kept.</p>"), "Markers"),
        "https://example.com/crlf": (("<p>line one\r\nline two\r\n\r\n\r\nline three</p>"
                                     "<pre>pre\r\n  kept\n\n\n\nspacing</pre>"), "CRLF"),
        "https://docs.example.org/api": (
            "<html><head><title>API reference</title></head><body>"
            + _nav(rng, "docs.example.org")
            + "".join(f"<h3>function_{i}</h3>{_code(rng)}<p>{_para(rng)}</p>" for i in range(12))
            + "</body></html>", ""),
        "https://news.example.net/long": (
            "<html><head><title>A very long article</title></head><body>"
            + "".join(f"<p>{_para(rng, 8)}</p>" for _ in range(80)) + "</body></html>", ""),
        "https://wiki.example.com/table": (
            "<html><head><title>Statistics</title></head><body><h1>Statistics</h1>"
            + _table(rng, 60) + "</body></html>", ""),
        "https://wiki.example.com/cjk": (
            "<html><head><title>日本語のページ</title></head><body>"
            + "".join(f"<p>{'東京は日本の首都です。' * rng.randint(5, 30)}</p>" for _ in range(30))
            + "</body></html>", ""),
        "https://wiki.example.com/special-tokens": (
            "<p>Text that looks like <|endoftext|> and &lt;|start|&gt; tokens.</p>", ""),
        "https://example.com/" + "very-long-path/" * 90: ("<p>long url page</p>", ""),
        "https://example.com/percent%20encoded%E2%9C%93": ("<p>unquoted header</p>", "Pct"),
    }
    for i in range(n_generated):
        domain = _DOMAINS[i % len(_DOMAINS)]
        url = f"https://{domain}/article/{i}"
        html = _article(rng, url, rng.randint(1, 24), title_tag=rng.random() < 0.8)
        pages[url] = (html, "" if rng.random() < 0.7 else f"Given title {i}")
    return pages


def fixture_hits(pages: dict[str, tuple[str, str]], seed: int = 0
                 ) -> dict[str, list[tuple[str, str, str]]]:
    """Search queries -> ``(title, url, summary)`` results over ``pages``."""
    rng = random.Random(seed + 1)
    urls = list(pages)
    queries: dict[str, list[tuple[str, str, str]]] = {}
    for q in range(12):
        query = " ".join(rng.sample(_WORDS[:50], rng.randint(1, 4)))
        if q == 3:
            query = "Zürich 東京 café"
        chosen = rng.sample(urls, rng.randint(0 if q == 5 else 1, 20))
        queries[query] = [(f"{rng.choice(_WORDS).title()} {i} {rng.choice(_NON_ASCII)}", u,
                           _sentence(rng)) for i, u in enumerate(chosen)]
    queries["external results"] = [("Elsewhere", "https://other.example/x?q=1&r=2", "summary"),
                                   ("Same twice", "https://other.example/x?q=1&r=2", "dup")]
    return queries
