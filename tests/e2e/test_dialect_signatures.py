"""A red-team corpus against the signatures of all three dialects on one `imgproxy serve`
(SPEC §3, §15.2, §15.3): thumbor and imgproxy signed (no unsafe/insecure), a native key, an
`http` store on a loopback origin. Every URL changed from what was signed is refused; every
spelling that is accepted answers with exactly the image that was signed (its ETag), whatever
query string, fragment or header rides along; sources signed but outside a store are 400 or
404 and the origin is never asked outside its base_url. Raw request lines, many at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgproxy.urls import sign_url
from tests.support import LiveServer, images, raw_get, write_config
from tests.support.origin import Origin
from tests.support.processes import served

THUMBOR_KEY = "thumbor-key"
NATIVE_KEY = "native-key"
PAIRS = [("736563726574", "68656C6C6F"), ("c0ffee" * 8, "facade" * 8)]  # rotation
SIZE = 8  # dialects.imgproxy.signature_size: 11 characters
CLIENTS = 32


def thumbor(rest: str, key: str = THUMBOR_KEY) -> str:
    mac = hmac.new(key.encode(), rest.encode(), hashlib.sha1).digest()
    return f"/thumbor/{base64.urlsafe_b64encode(mac).decode()}/{rest}"


def imgproxy(path: str, pair: tuple[str, str] = PAIRS[0], size: int = SIZE) -> str:
    key, salt = (bytes.fromhex(half) for half in pair)
    mac = hmac.new(key, salt + path.encode(), hashlib.sha256).digest()[:size]
    return "/imgproxy/" + base64.urlsafe_b64encode(mac).decode().rstrip("=") + path


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def standard(signature: str) -> str:
    """The same digest in the standard base64 alphabet (always a different spelling)."""
    spelled = signature.replace("-", "+").replace("_", "/")
    return spelled if spelled != signature else "+" + signature[1:]


def sig(url: str) -> str:
    """The signature segment of a dialect URL."""
    return url.split("/")[2]


@dataclass(frozen=True, slots=True)
class Case:
    url: str
    status: int
    same_as: str = ""  # for a 200: the signed URL whose image (ETag) it must be
    headers: str = ""


def corpus(remote: str) -> tuple[dict[str, str], list[Case]]:
    """The signed URLs (by name) and every hostile case built on them."""
    t = "300x200/photo.jpg"
    i = "/rs:fill:120:90/plain/photo.jpg"
    signed = {
        "thumbor": thumbor(t),
        "imgproxy": imgproxy(i),
        "native": sign_url("/media/photo.jpg?w=50", NATIVE_KEY),
        "thumbor-remote": thumbor(f"60x0/{remote}remote.jpg"),
        "imgproxy-remote": imgproxy(f"/w:70/plain/{remote}remote.jpg"),
    }
    ts, its = sig(signed["thumbor"]), sig(signed["imgproxy"])
    same = [
        # Spellings that mean the signed URL: its image, never another.
        Case(imgproxy(i, PAIRS[1]), 200, "imgproxy"),
        Case(signed["thumbor"].replace("=/", "%3D/", 1), 200, "thumbor"),
        Case(signed["thumbor"].replace("=/", "%3d/", 1), 200, "thumbor"),
        Case(thumbor("300x200/photo%2Ejpg"), 200, "thumbor"),  # signed as sent
        Case(imgproxy(f"/rs:fill:120:90/{b64('photo.jpg')}"), 200, "imgproxy"),
        Case(imgproxy(f"/rs:fill:120:90/{b64('local:///photo.jpg')}"), 200, "imgproxy"),
        Case(signed["native"] + "&", 200, "native"),
        Case(signed["native"].replace("w=50", "w=5%30"), 200, "native"),
        Case(signed["native"].replace("w=50", "%77=50"), 200, "native"),
        Case(signed["native"].replace("&s=", "&%73="), 200, "native"),
    ]
    # A query string, fragment or header added to a signed dialect URL changes nothing.
    for name in ("thumbor", "imgproxy", "thumbor-remote", "imgproxy-remote"):
        url = signed[name]
        same += [Case(url, 200, name)]
        same += [
            Case(url + extra, 200, name)
            for extra in (
                "?w=5000&h=5000&fit=fill&enlarge=1", "?fm=png&q=1&blur=100", "?wm=logo",
                "?p=small", "?s=x&rot=90&crop=0,0,1,1", "?v=1&dpr=4", "?",
                "#w=5000",  # httptools drops a fragment: the signed path is what is served
            )
        ]  # fmt: skip
        same += [  # hints are off here; Accept matters only to fm=auto
            Case(url, 200, name, header)
            for header in (
                "Accept: image/avif,image/webp,*/*\r\n", "Sec-CH-DPR: 4\r\nDPR: 4\r\n",
                "Sec-CH-Width: 64\r\nWidth: 64\r\n",
            )
        ]  # fmt: skip
    forged = [
        # thumbor signature spellings
        *(
            f"/thumbor/{s}/{t}"
            for s in (
                ts.rstrip("="), ts + "=", ts[:-2] + "=", ts.swapcase(), "", "unsafe", "UNSAFE",
                "Unsafe", "unsafe%20", "unsafe%00", "%75nsafe", "unsafe=", "%20" + ts,
                standard(ts).replace("/", "%2F"), sig(thumbor(t, "other-key")),
                sig(thumbor(t, NATIVE_KEY)), its, base64.b64encode(b"x" * 20).decode(),
                "%C3%A9" * 28, "%FF" * 28,
            )
        ),
        # thumbor: signed over one string, another served
        *(
            signed["thumbor"].replace(t, served_as)
            for served_as in (
                "300x200/./photo.jpg", "300x200/photo.jpg/", "300x200//photo.jpg",
                "300x200/sub/../photo.jpg", "300x200/%70hoto.jpg", "300x200/photo%2Ejpg",
                "300x200/photo.jpg;w=5000", "300x200/photo.jpg%00", "300x2000/photo.jpg",
                "300x200/fit-in/photo.jpg", "fit-in/300x200/photo.jpg", "-300x200/photo.jpg",
                "300x200/filters:quality(1)/photo.jpg", "300x200/smart/photo.jpg", "photo.jpg",
                "300x200/other.jpg", "300x200/photo.jpg/../other.jpg", "300X200/photo.jpg",
                "300x200/PHOTO.JPG", "trim/300x200/photo.jpg", "unsafe/300x200/photo.jpg",
            )
        ),
        signed["thumbor-remote"].replace("remote.jpg", "../status/200"),
        # imgproxy signature spellings
        *(
            f"/imgproxy/{s}{i}"
            for s in (
                its + "=", its[:-1], its + "A", its.swapcase(), "", "insecure", "INSECURE",
                "insecure%00", "%69nsecure", sig(imgproxy(i, size=32)),
                sig(imgproxy(i, (PAIRS[0][0], PAIRS[1][1]))),
                sig(imgproxy(i, (PAIRS[1][0], PAIRS[0][1]))), ts,
                standard(its), "%C3%A9" * 11, "%FF%FE",
            )
        ),
        # imgproxy: signed over one string, another served
        *(
            signed["imgproxy"].replace(i, served_as)
            for served_as in (
                "/rs:fill:120:90/plain/photo.jpg@png", "/rs:fill:120:90/plain/photo.jpg/",
                "/rs:fill:120:90//plain/photo.jpg", "/rs:fill:120:90/./plain/photo.jpg",
                "/rs:fill:120:900/plain/photo.jpg", "/rs%3Afill:120:90/plain/photo.jpg",
                "/rs:fill:120:90/w:5000/plain/photo.jpg", "/rs:fit:120:90/plain/photo.jpg",
                "/rs:fill:120:90/plain/other.jpg", "/rs:fill:120:90/plain/local:///photo.jpg",
                f"/rs:fill:120:90/{b64('photo.jpg')}", "/rs:fill:120:90/plain/photo%2Ejpg",
                "/plain/photo.jpg", "/rs:fill:120:90/plain/photo.jpg%3Fw=5000",
            )
        ),
        imgproxy(i + "?w=5000"),  # imgproxy signs the path only, as this server does
        imgproxy(i[1:]),  # without its leading slash
        # the native signature
        *(
            signed["native"] + extra
            for extra in ("&w=5000", "&s=" + sig(signed["thumbor"]), "&x", "&fm=png", "&s=")
        ),
        *(
            signed["native"].partition("&s=")[0] + "&s=" + spelled
            for spelled in ("%C3%A9" * 32, "%FF" * 32, "%00" * 32)
        ),
        *(
            signed["native"].replace(*change)
            for change in (
                ("w=50", "w=050"), ("w=50", "w=50;fm=png"), ("w=50", "w=50%3Bfm=png"),
                ("&s=", "&S="), ("/media/photo.jpg", "/media/photo%2Ejpg"),
                ("/media/photo.jpg", "/media/other.jpg"), ("/media/", "/private/"),
            )
        ),
        "/media/photo.jpg?w=50", "/media/photo.jpg?p=small&w=500", "/media/photo.jpg?s=",
        "/media/photo.jpg?fm=json", "/media/photo.jpg?p=small&s=" + "A" * 32,
    ]  # fmt: skip
    refused = [Case(url, 403) for url in forged]
    # Signed, but naming what no store may serve: 400, or 404 where it is a plain name.
    outside = [
        (signed["native"].replace("photo.jpg", "sub%2F..%2Fphoto.jpg"), 400),  # path syntax first
        (thumbor("300x200/%2e%2e/secret.jpg"), 400),
        (thumbor("300x200/sub%2F..%2F..%2Fsecret.jpg"), 400),
        (thumbor("300x200/%2Fetc%2Fpasswd"), 400),
        (thumbor("300x200/..%5Csecret.jpg"), 400),
        (thumbor("300x200/photo.jpg%00.png"), 400),
        (thumbor("300x200/%ff.jpg"), 400),
        (thumbor(f"300x200/{remote}../status/200"), 400),
        (thumbor(f"300x200/{remote}..%2Fstatus%2F200"), 400),
        (thumbor(f"300x200/{remote.replace('/files/', '/status/')}200"), 400),
        (thumbor(f"300x200/{remote.replace('://', '://x@')}remote.jpg"), 400),
        (thumbor(f"300x200/{remote.replace('/files/', '/files')}x/../remote.jpg"), 400),
        (thumbor(f"300x200/{remote[:-1]}-remote.jpg"), 400),
        (thumbor(f"300x200/{remote.upper()}remote.jpg"), 400),
        (thumbor("300x200/%252e%252e/secret.jpg"), 404),  # the name `%2e%2e`, in the store
        (thumbor(f"300x200/{remote}%252e%252e%252fstatus%252f200"), 404),  # ditto, origin's
        (imgproxy("/w:50/plain/local:///../secret.jpg"), 400),
        (imgproxy("/w:50/plain/local:///%2e%2e/secret.jpg"), 400),
        (imgproxy("/w:50/plain/local:////etc/passwd"), 400),
        (imgproxy("/w:50/plain/%2e%2e%2fsecret.jpg"), 400),
        (imgproxy("/w:50/plain/%252e%252e%252fsecret.jpg"), 400),  # a URL's path, decoded
        (imgproxy("/w:50/plain/file:///etc/passwd"), 400),
        (imgproxy("/w:50/plain/private:///photo.jpg"), 400),
        (imgproxy(f"/w:50/plain/{remote}../status/200"), 400),
        (imgproxy(f"/w:50/plain/{remote}%2e%2e%2fstatus%2f200"), 400),
        (imgproxy(f"/w:50/plain/{remote.replace('/files/', '/status/')}200"), 400),
        (imgproxy(f"/w:50/plain/{remote[:-1]}-remote.jpg"), 400),
        (imgproxy(f"/w:50/plain/{remote}remote.jpg%3Fx=1"), 400),
        (imgproxy(f"/w:50/{b64('local:///../secret.jpg')}"), 400),
        (imgproxy(f"/w:50/{b64(remote + '../status/200')}"), 400),
        (imgproxy(f"/w:50/{b64('photo.jpg')}%0A"), 400),
        (imgproxy(f"/w:50/{b64('photo.jpg')[:-1]}=x"), 400),
        (imgproxy("/w:50/plain/photo.jpg@png@webp"), 400),
        (imgproxy("/w:50/plain/photo.jpg@exe"), 400),
        (imgproxy("/w:50/plain/photo.jpg%00"), 400),
        (imgproxy("/w:50/plain/photo%40png.jpg"), 404),
    ]
    routes = [
        ("//thumbor" + signed["thumbor"][8:], 404), ("/THUMBOR" + signed["thumbor"][8:], 404),
        ("/%74humbor" + signed["thumbor"][8:], 404), ("/thumbor%2F" + signed["thumbor"][9:], 404),
        ("/imgproxy/" + signed["imgproxy"][9:], 403), ("/Imgproxy" + signed["imgproxy"][9:], 404),
    ]  # fmt: skip
    cases = same + refused + [Case(url, status) for url, status in outside + routes]
    return signed, cases


@pytest.fixture
def origin() -> Iterator[tuple[Origin, str]]:
    origin = Origin()
    origin.put("remote.jpg", images.jpeg((160, 120)))
    with LiveServer(origin, host="127.0.0.2") as remote:
        yield origin, remote.url + "/files/"


def test_no_change_to_a_signed_url_gets_another_image(
    media: Path, tmp_path: Path, origin: tuple[Origin, str]
) -> None:
    (media / "other.jpg").write_bytes(images.jpeg((641, 481)))
    (tmp_path / "secret.jpg").write_bytes(images.jpeg((64, 64)))
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "photo.jpg").write_bytes(images.jpeg((64, 64)))
    log, remote = origin
    web = {
        "kind": "http",
        "base_url": remote,
        "approved": True,
        "allowed_networks": ["127.0.0.2/32"],
    }
    sections: dict[str, dict[str, Any]] = {
        "stores.private": {"kind": "fs", "root": str(tmp_path / "private"), "approved": True},
        "stores.web": web,
        "dialects.thumbor": {"store": "media", "security_key": THUMBOR_KEY},
        "dialects.imgproxy": {
            "store": "media",
            "keys": [key for key, _ in PAIRS],
            "salts": [salt for _, salt in PAIRS],
            "signature_size": SIZE,
        },
    }
    config = write_config(tmp_path, media, security={"keys": [NATIVE_KEY]}, **sections)
    signed, cases = corpus(remote)
    assert len(set(cases)) == len(cases)  # each case a distinct request

    def ask(case: Case) -> tuple[int, str]:
        status, data = raw_get(url, case.url, case.headers)
        found = re.search(rb"(?im)^etag: *(.+?)\r$", data.partition(b"\r\n\r\n")[0])
        return status, found.group(1).decode() if found else ""

    with served(config) as server:
        url = server.url
        with ThreadPoolExecutor(CLIENTS) as pool:  # cold: forgeries race the signed URLs
            answers = list(pool.map(ask, cases * 2))
        etags = {name: ask(Case(signed_url, 200)) for name, signed_url in signed.items()}
        assert {status for status, _ in etags.values()} == {200}
        assert len({etag for _, etag in etags.values()}) == len(signed)  # five images
    wrong = [
        (case.url[:100], case.headers, status, case.status)
        for case, (status, _) in zip(cases * 2, answers, strict=True)
        if status != case.status
    ]
    assert wrong == []
    mine = {name: etag for name, (_, etag) in etags.items()}
    other_image = [
        (case.url[:100], etag)
        for case, (_, etag) in zip(cases * 2, answers, strict=True)
        if etag != (mine[case.same_as] if case.same_as else "")
    ]
    assert other_image == []
    asked = {path for _, path in log.log}
    assert asked and all(
        path.startswith("/files/") and ".." not in path.split("/") for path in asked
    ), asked
    assert "Traceback" not in server.stderr, server.stderr[-3000:]
