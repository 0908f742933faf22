"""The demo page's playground form (SPEC §2.1 and §15.1): one labelled field per native
parameter, in the order the operations apply, each with what it means (its title) and its
range (a hint under it). The page builds a rendition URL from what is filled in."""

from __future__ import annotations

import html
from collections.abc import Collection

from imgproxy.params import OPERATION_KEYS

PLAYGROUND_PARAMS = (
    "w",
    "h",
    "dpr",
    "fit",
    "g",
    "fx",
    "fy",
    "fm",
    "q",
    "bg",
    "enlarge",
    *OPERATION_KEYS,
)
GRAVITIES = ("center", "entropy", "smart", "focal", "n", "s", "e", "w", "ne", "nw", "se", "sw")


def _options(*values: str, selected: str = "") -> str:
    return "".join(
        f"<option{' selected' if value == selected else ''}>{value}</option>" for value in values
    )


# The playground's fields (SPEC §2.1): label, what the parameter means (the title), the
# control, and a hint shown under it. {max} is limits.max_output_dimension.
FIELDS = (
    (
        "w — width, CSS px",
        "the box width in CSS pixels; empty: from h, keeping the aspect",
        '<input name="w" type="number" min="1" max="{max}" value="400">',
        "1..{max}",
    ),
    (
        "h — height, CSS px",
        "the box height in CSS pixels; empty: from w, keeping the aspect",
        '<input name="h" type="number" min="1" max="{max}" value="300">',
        "1..{max}",
    ),
    (
        "dpr — device pixel ratio",
        "multiplies w and h, for high-density screens",
        '<input name="dpr" type="number" min="1" max="4" step="0.5">',
        "1..4, times w and h",
    ),
    (
        "fit — how the image meets the box",
        "contain: inside the box; cover: fills it, crops the rest; fill: stretched to it; "
        "pad: contain, then pad to the box with bg",
        f'<select name="fit">{_options("contain", "cover", "fill", "pad", selected="cover")}'
        "</select>",
        "contain · cover: crop · fill: stretch · pad",
    ),
    (
        "g — gravity, where cover crops",
        "which part of the image cover keeps; entropy: the busiest region; smart: the most "
        "salient (edges, saturation, skin); focal: the point stored with the image",
        f'<select name="g">{_options(*GRAVITIES)}</select>',
        "a compass point, entropy, smart, focal",
    ),
    (
        "fm — output format",
        "auto picks from the browser's Accept header: avif, webp, then jpeg or png",
        f'<select name="fm">{_options("auto", "jpeg", "png", "webp", "avif")}</select>',
        "auto: from Accept",
    ),
    (
        "q — quality",
        "encoder quality; empty: the format's default",
        '<input name="q" type="number" min="1" max="100">',
        "1..100; empty: default",
    ),
    (
        "bg — background colour",
        "for pad, and for flattening transparency into jpeg",
        '<input name="bg" placeholder="ffffff">',
        "hex rgb, rrggbb or rrggbbaa",
    ),
    (
        "enlarge — upscale",
        "allow the output to be larger than the source",
        '<select name="enlarge"><option value="">no</option><option value="1">yes</option>'
        "</select>",
        "grow past the source",
    ),
    # The operations (SPEC §15.1), in the order they apply.
    (
        "crop — region of the source",
        "x,y,w,h in source pixels, or four fractions written with a point (0.25,0,0.5,1.0)",
        '<input name="crop" placeholder="x,y,w,h">',
        "pixels, or fractions 0..1",
    ),
    (
        "trim — remove a uniform border",
        "the border's colour is the top-left pixel's, within this tolerance",
        '<input name="trim" type="number" min="0" max="255">',
        "tolerance 0..255",
    ),
    (
        "rot — rotate clockwise",
        "before fitting: w and h describe the rotated image",
        f'<select name="rot"><option value="">0</option>{_options("90", "180", "270")}</select>',
        "90 · 180 · 270 degrees",
    ),
    (
        "flip — mirror",
        "after rotating: h mirrors left and right, v top and bottom",
        f'<select name="flip"><option value="">no</option>{_options("h", "v", "hv")}</select>',
        "h · v · hv",
    ),
    (
        "blur — Gaussian blur",
        "sigma in output pixels",
        '<input name="blur" type="number" min="0.3" max="100" step="0.1">',
        "sigma 0.3..100",
    ),
    (
        "sharpen — unsharp mask",
        "sigma in output pixels",
        '<input name="sharpen" type="number" min="0.3" max="10" step="0.1">',
        "sigma 0.3..10",
    ),
    (
        "pixelate — block size",
        "blocks of this many output pixels, each one colour",
        '<input name="pixelate" type="number" min="2" max="256">',
        "2..256 px",
    ),
    (
        "pad — borders of bg",
        "added after fitting, counted in the output limits",
        '<input name="pad" placeholder="t,r,b,l">',
        "t,r,b,l or one, 0..1024 px",
    ),
)


def fields(max_dimension: int, watermarks: Collection[str] = ()) -> str:
    fields: tuple[tuple[str, str, str, str], ...] = FIELDS
    if watermarks:  # only where [watermarks] are configured: wm takes nothing else
        names = _options(*(html.escape(name) for name in sorted(watermarks)))
        fields += (
            (
                "wm — watermark",
                "a [watermarks] entry drawn last, at its position, opacity, scale and margin",
                f'<select name="wm"><option value="">none</option>{names}</select>',
                "as configured",
            ),
        )
    return "\n".join(
        f'  <label title="{html.escape(title)}">{label}\n    '
        f"{control.format(max=max_dimension)}<small>{hint.format(max=max_dimension)}</small>"
        "</label>"
        for label, title, control, hint in fields
    )
