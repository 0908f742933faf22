"""`imgproxy serve` logs: every line has a time and a level; `log_format = "json"` gives one
object per line; `access_log = true` adds a line per image request with its store, bytes,
the cache tier that answered and the render time."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import images
from tests.support.processes import served


def serve_and_log(tmp_path: Path, section: str) -> list[str]:
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    config = tmp_path / "imgproxy.toml"
    config.write_text(
        f'[server]\n{section}\n[stores.media]\nkind = "fs"\nroot = "{folder}"\napproved = true\n'
    )
    with served(config) as server:
        for _ in range(2):  # a render, then a memory hit
            assert httpx.get(server.url + "/media/photo.jpg?w=100").status_code == 200
        assert httpx.get(server.url + "/media/none.jpg").status_code == 404
    return server.stderr.splitlines()


def test_json_lines_with_an_access_line_per_image_request(tmp_path: Path) -> None:
    lines = serve_and_log(tmp_path, 'access_log = true\nlog_format = "json"')
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "imgproxy.access"]
    assert [(r["status"], r["path"]) for r in access] == [
        (200, "/media/photo.jpg"),
        (200, "/media/photo.jpg"),
        (404, "/media/none.jpg"),
    ]
    rendered, hit, missing = access
    assert rendered["store"] == "media" and rendered["render_ms"] > 0
    assert rendered["tier"] is None and hit["tier"] == "memory" and hit["render_ms"] is None
    assert rendered["bytes"] == hit["bytes"] > 0
    assert all(r["ms"] >= 0 and r["level"] == "info" for r in access)
    assert missing["bytes"] > 0  # the JSON error body


def test_text_lines_have_a_time_and_a_level_and_no_access_line_by_default(tmp_path: Path) -> None:
    lines = serve_and_log(tmp_path, 'log_level = "info"')
    assert lines, "uvicorn's start-up lines come through our handler"
    for line in lines:
        stamp, _, rest = line.partition(" ")
        assert stamp[:4].isdigit() and rest.split()[1] in {"INFO", "WARNING", "ERROR"}, line
    assert not any("imgproxy.access" in line for line in lines)
