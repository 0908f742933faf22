"""Flask (WSGI): imgproxy as WSGI middleware around the app, and template globals.

.venv/bin/python examples/flask_app.py --port 8084
http://127.0.0.1:8084/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flask import Flask, render_template_string

from imgproxy import ImageProxy, Settings
from imgproxy.contrib.flask import init_app

MEDIA = Path(__file__).resolve().parent / "media"
settings = Settings.from_mapping(
    {
        "security": {"keys": ["example-signing-key"]},
        "stores": {"media": {"kind": "fs", "root": str(MEDIA), "approved": True}},
    }
)

app = Flask(__name__)
init_app(app, ImageProxy(settings), prefix="/media")

PAGE = """<!doctype html><title>Flask + imgproxy</title>
<img src="{{ imgproxy_url('media', 'coffee.png', w=300, h=200, fit='cover') }}"
     srcset="{{ imgproxy_srcset('media', 'coffee.png', [300, 600], h=200, fit='cover') }}"
     alt="coffee">"""


@app.get("/")
def home() -> str:
    return render_template_string(PAGE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8084)
    app.run(host="127.0.0.1", port=parser.parse_args().port)
