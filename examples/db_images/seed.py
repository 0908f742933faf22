"""Create the example's SQLite database: profile pictures held as BLOB rows next to the user.

python examples/db_images/seed.py            # writes examples/db_images/var/app.db
python examples/db_images/seed.py --db PATH
"""

from __future__ import annotations

import argparse
import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
MEDIA = HERE.parent / "media"

SCHEMA = """
CREATE TABLE IF NOT EXISTS profile_picture (
    user_id      INTEGER PRIMARY KEY,
    data         BLOB NOT NULL,
    mime         TEXT,             -- what the uploader claimed: never trusted
    last_updated TEXT NOT NULL,    -- naive timestamps are UTC
    approved     INTEGER NOT NULL DEFAULT 0
)
"""


def as_bmp(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize((128, 128)).save(buffer, "BMP")
    return buffer.getvalue()


def rows() -> list[tuple[int, bytes, str, bool]]:
    return [
        (1, (MEDIA / "chelsea.png").read_bytes(), "image/png", True),
        (2, (MEDIA / "rocket.jpg").read_bytes(), "image/jpeg", True),
        (3, (MEDIA / "astronaut.png").read_bytes(), "image/png", False),  # PNG: fine unapproved
        (4, as_bmp(MEDIA / "coffee.png"), "image/png", False),  # a BMP awaiting a moderator
    ]


def seed(database: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0).isoformat(sep=" ")
    with sqlite3.connect(database) as db:
        db.execute(SCHEMA)
        db.executemany(
            "INSERT OR REPLACE INTO profile_picture VALUES (?, ?, ?, ?, ?)",
            [(user, data, mime, now, approved) for user, data, mime, approved in rows()],
        )
    print(f"seeded {database} with users 1-4")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=HERE / "var" / "app.db")
    seed(parser.parse_args().db)
