"""Focal points stored with the image (SPEC §13): `g=focal` without `fx`/`fy` crops around the
point the store keeps (fs sidecar, sql columns, s3 metadata), and the ETag changes with it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from imgproxy import ImageProxy, Settings
from imgproxy.stores import SQLStore
from tests.support import Serve, images, settings_for
from tests.support.objects import S3Server

CROP = "w=100&h=100&fit=cover&g=focal"


def subject_at_right() -> bytes:
    """A grey 400x200 picture with a red square near its right edge (x 320..360)."""
    image = Image.new("RGB", (400, 200), (128, 128, 128))
    image.paste((255, 0, 0), (320, 80, 360, 120))
    return images.encode(image, "PNG")


def red_share(body: bytes) -> float:
    pixels = np.asarray(images.decode(body).convert("RGB"), dtype=int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    return float(red.mean())


def test_a_sidecar_focal_point_moves_the_crop_and_the_etag(media: Path, serve: Serve) -> None:
    (media / "subject.png").write_bytes(subject_at_right())
    sidecar = media / "subject.png.meta.json"
    with httpx.Client(base_url=serve(ImageProxy(settings_for(media))).url) as http:
        centred = http.get(f"/media/subject.png?{CROP}")
        assert red_share(centred.content) == 0  # no point stored: the centre, no subject
        sidecar.write_text(json.dumps({"approved": True, "focal": [0.85, 0.5]}))
        focused = http.get(f"/media/subject.png?{CROP}")
        assert red_share(focused.content) > 0.02
        assert focused.headers["etag"] != centred.headers["etag"]
        sidecar.write_text(json.dumps({"approved": True, "focal": [0.1, 0.5]}))
        moved = http.get(f"/media/subject.png?{CROP}")
        assert red_share(moved.content) == 0 and moved.headers["etag"] != focused.headers["etag"]
        explicit = http.get(f"/media/subject.png?{CROP}&fx=0.85&fy=0.5")
        assert red_share(explicit.content) > 0.02  # fx/fy in the URL win over the stored point
        plain = http.get("/media/subject.png?w=100")
        sidecar.write_text(json.dumps({"approved": True, "focal": [0.5, 0.5]}))
        assert http.get("/media/subject.png?w=100").headers["etag"] == plain.headers["etag"]
        sidecar.write_text(json.dumps({"approved": True, "focal": [7, "x"]}))  # ignored
        assert http.get(f"/media/subject.png?{CROP}").headers["etag"] == centred.headers["etag"]


def test_sql_focal_columns(tmp_path: Path, media: Path, serve: Serve) -> None:
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE pics (id INTEGER PRIMARY KEY, data BLOB, updated TEXT, fx REAL, fy REAL)"
        )
        db.execute(
            "INSERT INTO pics VALUES (1, ?, '2026-01-01 00:00:00', 0.85, 0.5)",
            (subject_at_right(),),
        )
        db.execute(
            "INSERT INTO pics VALUES (2, ?, '2026-01-01 00:00:00', NULL, NULL)",
            (subject_at_right(),),
        )
    store = SQLStore(
        f"sqlite:///{database}",
        table="pics",
        key_column="id",
        data_column="data",
        updated_column="updated",
        focal_x_column="fx",
        focal_y_column="fy",
        approved=True,
    )
    assert asyncio.run(store.stat("1")).focal == (0.85, 0.5)
    proxy = ImageProxy(settings_for(media), stores={"pics": store})
    with httpx.Client(base_url=serve(proxy).url) as http:
        assert red_share(http.get(f"/pics/1?{CROP}").content) > 0.02
        assert red_share(http.get(f"/pics/2?{CROP}").content) == 0


def test_s3_focal_metadata(s3: S3Server, media: Path, serve: Serve) -> None:
    s3.put("media", "focal/subject.png", subject_at_right(), focal="0.85,0.5")
    key, secret = s3.credentials().values()
    store = {
        "kind": "s3",
        "bucket": "media",
        "prefix": "focal/",
        "endpoint_url": s3.endpoint,
        "access_key_id": key,
        "secret_access_key": secret,
        "approved": True,
    }
    settings = Settings.from_mapping({"stores": {"up": store}}, env={})
    with httpx.Client(base_url=serve(ImageProxy(settings)).url) as http:
        assert red_share(http.get(f"/up/subject.png?{CROP}").content) > 0.02


def test_hostile_stored_points_are_ignored(media: Path, serve: Serve) -> None:
    """A 400-digit number, NaN, infinity, booleans: the centre, never a 500 or a 422."""
    from imgproxy.stores import FileSystemStore, StoredFile

    (media / "subject.png").write_bytes(subject_at_right())
    sidecar = media / "subject.png.meta.json"

    class Pointing(FileSystemStore):
        point: tuple[float, float] = (float("inf"), 0.5)

        async def stat(self, path: str) -> StoredFile:
            import dataclasses

            return dataclasses.replace(await super().stat(path), focal=self.point)

    python_store = Pointing(media, approved=True)
    proxy = ImageProxy(settings_for(media), stores={"py": python_store})
    with httpx.Client(base_url=serve(proxy).url) as http:
        centred = http.get(f"/media/subject.png?{CROP}")
        for text in ('{"focal": [1' + "0" * 400 + ", 0.5]}", '{"focal": [true, false]}'):
            sidecar.write_text(text)
            again = http.get(f"/media/subject.png?{CROP}")
            assert again.status_code == 200 and again.headers["etag"] == centred.headers["etag"]
        for point in ((float("inf"), 0.5), (float("nan"), 0.5), (2.0, -1.0)):
            python_store.point = point
            assert http.get(f"/py/subject.png?{CROP}").status_code == 200, point
