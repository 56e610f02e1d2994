"""The eval board links each row to its bundle's viewer."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote

from agent_envs.cli import main as cli_main
from agent_envs.eval import board
from agent_envs.viewer import page as page_module
from tests.agent_envs.viewer.helpers import read_page


def _links(html: str) -> dict[str, str]:
    """Model name -> viewer href, from the board's rows."""
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html):
        cells = re.findall(r"<td>(.*?)</td>", row)
        href = re.search(r"href='([^']+)'", row)
        if cells and href:
            out[cells[1]] = href.group(1)
    return out


def test_each_row_links_to_its_bundles_viewer(bundle_pair, tmp_path: Path, capsys) -> None:
    html = tmp_path / "site" / "board.html"
    html.parent.mkdir()
    for b in bundle_pair:
        (b / "viewer.html").unlink(missing_ok=True)
    assert cli_main(["eval", "board", *map(str, bundle_pair), "--html", str(html)]) == 0
    links = _links(html.read_text())
    assert set(links) == {"model-a", "model-b"}
    for model, bundle in zip(("model-a", "model-b"), bundle_pair):
        page = (html.parent / unquote(links[model])).resolve()
        assert page == (bundle / "viewer.html").resolve()
        meta, _ = read_page(page)
        assert meta["title"] == f"viewer-test | {model}"
    # Without an HTML file to link from, the board is as before: no viewer column.
    assert "<th>viewer</th>" not in board(list(bundle_pair))[1]


def test_a_fresh_viewer_is_kept_a_stale_one_rebuilt_a_read_only_bundle_served_beside(
        bundle_pair, tmp_path: Path, monkeypatch) -> None:
    a = shutil.copytree(bundle_pair[0], tmp_path / "a")
    html = tmp_path / "board.html"
    board([a], html_path=html)
    page = a / "viewer.html"
    first = page.stat().st_mtime_ns
    board([a], html_path=html)
    assert page.stat().st_mtime_ns == first  # fresh: not rebuilt
    later = time.time() + 5
    os.utime(a / "episodes.parquet", (later, later))
    board([a], html_path=html)
    assert page.stat().st_mtime_ns != first  # the episodes changed: rebuilt

    # A read-only bundle (a published copy). Root may write anywhere, so the check is faked.
    ro = shutil.copytree(bundle_pair[1], tmp_path / "ro")
    (ro / "viewer.html").unlink(missing_ok=True)
    real = os.access
    monkeypatch.setattr(page_module.os, "access",
                        lambda p, mode: False if Path(p) == ro else real(p, mode))
    _, page_html = board([ro], html_path=html)
    href = unquote(_links(page_html)["model-b"])
    assert href.startswith("board-viewers/ro-") and (tmp_path / href).exists()
    assert not (ro / "viewer.html").exists()
