"""What a user reads is true of what they install: every extra is listed, nothing cites a
document they do not have, and every link between the docs leads somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from tests.support.processes import served

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
USER_DOCS = [README, ROOT / "examples/README.md", *sorted((ROOT / "examples/guides").glob("*.md"))]


def test_the_readme_lists_every_extra() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"]) - {"dev"}
    install = README.read_text().split("\n## Install\n")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `([a-z0-9]+)` \|", install, re.MULTILINE))
    assert listed == extras


def test_no_user_document_or_help_cites_the_spec() -> None:
    helps = [
        subprocess.run(
            [sys.executable, "-m", "imgproxy", *command, "--help"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        for command in ([], ["serve"], ["check"], ["sign"], ["purge"], ["warm"], ["config"])
    ]
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in USER_DOCS}
    texts |= {f"--help {n}": h for n, h in enumerate(helps)}
    assert {name for name, text in texts.items() if re.search(r"SPEC|§", text)} == set()


def test_every_relative_link_leads_to_a_file() -> None:
    broken = []
    for doc in [*USER_DOCS, ROOT / "ARCHITECTURE.md", ROOT / "benchmarks/README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_first_screen_has_the_two_commands_and_the_install_line() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:25])
    for line in ("make serve", "make test", 'pip install "imgproxy-server[server]"'):
        assert line in first_screen
    assert "examples/guides/django.md" in first_screen


def test_the_readme_links_after_make_serve_answer_as_it_says() -> None:
    """Every http://127.0.0.1:8080 link of the README's first screen, against `imgproxy serve`
    with the config `make serve` uses: each answers 200, and the thumbor and imgproxy
    spellings of the smart crop are the native rendition, ETag for ETag."""
    head = README.read_text().split("## URLs")[0]
    links = re.findall(r"<http://127\.0\.0\.1:8080(/[^>]*)>", head)
    assert len(links) >= 5, links
    with served(ROOT / "config" / "imgproxy.toml") as server:
        answers = {link: httpx.get(server.url + link, timeout=60) for link in links}
        native = httpx.get(f"{server.url}/media/astronaut.png?w=300&h=200&fit=cover&g=smart")
    for link, answer in answers.items():
        assert answer.status_code == (404 if "nobody" in link else 200), (link, answer.text[:200])
    dialects = [answer for link, answer in answers.items() if "/thumbor/" in link]
    dialects += [answer for link, answer in answers.items() if "/imgproxy/" in link]
    assert len(dialects) == 2
    for answer in dialects:
        assert answer.headers["etag"] == native.headers["etag"]
