"""Jobs that share a decode (same version, same `dct_scale`) make what a lone render makes:
memory.dct_scale must agree with the DCT scale render/__init__.py's _draft asks of Pillow,
for every fit and EXIF orientation, or a shared frame would change a rendition's bytes."""

from __future__ import annotations

import itertools

import pytest

from imgproxy import render
from imgproxy.formats import OutputFormat
from imgproxy.job import RenderJob
from imgproxy.params import Fit, Flip, Transform
from imgproxy.render.memory import dct_scale
from imgproxy.render.shared import SharedFrame
from tests.support import images

TRANSFORMS = [
    Transform(width=w, height=h, fit=fit)
    for w, h in ((100, None), (150, None), (301, None), (600, None), (None, 90), (300, 100))
    for fit in (Fit.CONTAIN, Fit.COVER, Fit.FILL, Fit.PAD)
] + [  # a crop or a turn changes which DCT scale the kept region needs (SPEC §15.1)
    Transform(width=150, crop=(100, 50, 400, 300)),
    Transform(width=100, crop=(300, 200, 600, 400)),
    Transform(width=120, height=200, fit=Fit.COVER, rotate=90),
    Transform(width=80, flip=Flip.H, pad=(4, 4, 4, 4)),
]


def job(t: Transform, output: OutputFormat = OutputFormat.JPEG) -> RenderJob:
    return RenderJob(t, output, 80, None, False, 50_000_000)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_jobs_of_one_dct_scale_get_their_lone_bytes_from_one_decode(orientation: int) -> None:
    data = images.jpeg_with_exif((1200, 800), orientation, gps=False)
    info = render.probe(data, None, 50_000_000)
    groups: dict[int, list[Transform]] = {}
    for t in TRANSFORMS:
        groups.setdefault(dct_scale(info, t), []).append(t)
    assert len(groups) >= 3  # several scales, each shared by several transforms
    for scale, members in groups.items():
        frame = SharedFrame(render.decode(data, job(members[0])))
        for t, output in itertools.product(members, (OutputFormat.JPEG, OutputFormat.WEBP)):
            key = frame.enter(t)
            shared = frame.render(job(t, output), key).body
            frame.leave(key)
            assert shared == render.render(data, job(t, output)).body, (scale, t, output)
