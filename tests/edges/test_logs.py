"""`imgproxy serve` logs: every line has a time and a level; `log_format = "json"` gives one
object per line; `access_log = true` adds a line per image request with its store, bytes,
the cache tier that answered and the render time."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support import images
from tests.support.processes import served

AGENT = 'probe/1.0 (tests; "quoted")'  # spaces and quotes, as browsers' agents have


def serve_and_log(tmp_path: Path, section: str, *args: str) -> list[str]:
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.jpeg((320, 240)))
    config = tmp_path / "imgproxy.toml"
    config.write_text(
        f'[server]\n{section}\n[stores.media]\nkind = "fs"\nroot = "{folder}"\napproved = true\n'
    )
    with served(config, *args) as server:
        agent = {"user-agent": AGENT}
        for _ in range(2):  # a render, then a memory hit
            assert (
                httpx.get(server.url + "/media/photo.jpg?w=100", headers=agent).status_code == 200
            )
        assert httpx.get(server.url + "/media/none.jpg", headers=agent).status_code == 404
    return [f"url {server.url}", *server.stderr.splitlines()]


def test_json_lines_with_an_access_line_per_image_request(tmp_path: Path) -> None:
    lines = serve_and_log(tmp_path, 'access_log = true\nlog_format = "json"')[1:]
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
    assert all(r["client"] == "127.0.0.1" and r["user_agent"] == AGENT for r in access)


def test_text_lines_have_a_time_and_a_level_and_no_access_line_by_default(tmp_path: Path) -> None:
    lines = serve_and_log(tmp_path, 'log_level = "info"')[1:]
    assert lines, "uvicorn's start-up lines come through our handler"
    for line in lines:
        stamp, _, rest = line.partition(" ")
        assert stamp[:4].isdigit() and rest.split()[1] in {"INFO", "WARNING", "ERROR"}, line
    assert not any("imgproxy.access" in line for line in lines)


def test_text_access_lines_say_each_fact_once(tmp_path: Path) -> None:
    """The message said GET /media/photo.jpg 200, and the fields said method=GET
    path=/media/photo.jpg status=200 again."""
    lines = serve_and_log(tmp_path, "access_log = true")
    access = [
        line.partition(" imgproxy.access: ")[2] for line in lines if "imgproxy.access" in line
    ]
    assert len(access) == 3
    rendered, hit, missing = access
    assert hit.startswith("GET /media/photo.jpg 200 query=w=100 ")
    assert missing.startswith("GET /media/none.jpg 404 ")
    for line in access:
        fields = line.split(" client=")[1]
        assert fields.startswith(f"127.0.0.1 user_agent={json.dumps(AGENT)} store=media "), line
        assert "method=" not in line and "path=" not in line and "status=" not in line
        assert line.count("/media/") == 1
    assert " tier=memory " in hit and " render_ms=" in rendered


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_listening_address_is_logged_at_start(tmp_path: Path, workers: str) -> None:
    """With --workers, the supervisor hands its workers sockets, and uvicorn then logged no
    address at all."""
    url, *lines = serve_and_log(tmp_path, "", "--workers", workers)
    url = url.removeprefix("url ")
    said = [line for line in lines if url in line]
    assert len(said) == 1, lines
    if workers == "2":
        assert said[0].endswith(f"imgproxy serving on {url} with 2 workers (Press CTRL+C to quit)")
