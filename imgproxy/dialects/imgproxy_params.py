"""The state imgproxy options leave -> the native query parameters it means (SPEC §15.3).

Decided once every option is known: the crop's gravity defaults to `gravity`, padding follows
`dpr`. What the native transform cannot express exactly is a 400 naming the option.
"""

from __future__ import annotations

from imgproxy.dialects.imgproxy_arguments import Gravity
from imgproxy.dialects.imgproxy_options import FITS, State
from imgproxy.dialects.imgproxy_sizing import Sizing
from imgproxy.errors import BadRequest
from imgproxy.settings import WatermarkSettings


def native_params(
    state: State, *, watermark: tuple[str, WatermarkSettings] | None
) -> dict[str, str]:
    """The native parameters a state means (SPEC §2.1, §15.1)."""
    params: dict[str, str] = {}
    params.update(_geometry(state))
    gravity = state.get("gravity")
    if gravity is not None and gravity[0] != "center":
        params.update(_native_gravity(gravity))
    if "crop" in state:
        params.update(_crop(state))
    dpr = state.get("dpr", 1.0)
    for key in ("trim", "rot", "flip", "blur", "sharpen", "pixelate", "bg", "q", "fm", "p", "v"):
        if state.get(key) is not None:  # None: off, or imgproxy's way of saying the default
            params[key] = _text(state[key])
    if "padding" in state:
        sides = [round(side * dpr) for side in state["padding"]]
        if any(sides):
            same = len(set(sides)) == 1
            params["pad"] = str(sides[0]) if same else ",".join(map(str, sides))
    if "watermark" in state:
        params.update(_watermark(state["watermark"], watermark))
    return params


def _geometry(state: State) -> dict[str, str]:
    width, height = state.get("width", 0), state.get("height", 0)
    if not width and not height:
        return {}  # no box: nothing to fit, imgproxy keeps the source's size
    params = {"fit": _fit(state, both=bool(width and height))}
    if width:
        params["w"] = str(width)
    if height:
        params["h"] = str(height)
    if state.get("enlarge"):
        params["enlarge"] = "1"
    if "dpr" in state:
        params["dpr"] = _text(state["dpr"])
    return params


def _fit(state: State, *, both: bool) -> str:
    """The native fit; where the source's size decides more (`extend` with another type or
    an open side, `force` with an open side), `sizing` says the rest."""
    kind = state.get("resizing_type", "fit")
    if not both:
        return "contain"  # one side open keeps the aspect whatever the type, but force
    if state.get("extend", False) and kind == "fit":
        return "pad"
    return FITS[kind]


def sizing(state: State) -> Sizing | None:
    """What decides the answer once the source's size is known, for the URLs that need it
    (imgproxy_sizing.py); None for the others. With trim, crop or flip the source's size
    is not the one imgproxy sizes: such a URL keeps its plain mapping, or is a 400 where
    it has none."""
    box = (state.get("width", 0), state.get("height", 0))
    kind = state.get("resizing_type", "fit")
    enlarge, extend = bool(state.get("enlarge")), bool(state.get("extend"))
    dpr = state.get("dpr", 1.0)
    padding = state.get("padding", (0, 0, 0, 0))
    if not Sizing.needed(box, kind, enlarge, extend, dpr):
        return None
    if state.get("trim") is not None or "crop" in state or state.get("flip"):
        if (extend and (kind != "fit" or not all(box))) or (kind == "force" and not all(box)):
            raise BadRequest(
                "extend (other than fit with both sides) and force with a 0 side: not"
                " supported with trim, crop or flip"
            )
        return None
    gravity = state.get("gravity") or ("center", 0.0, 0.0)
    return Sizing(box, kind, enlarge, extend, dpr, gravity, padding)


def _native_gravity(gravity: Gravity) -> dict[str, str]:
    kind, x, y = gravity
    if kind == "focal":
        return {"g": "focal", "fx": _text(x), "fy": _text(y)}
    return {"g": kind}


def _crop(state: State) -> dict[str, str]:
    """imgproxy's crop is a size placed by a gravity; the native one is a region, so it is
    expressed as fractions of the source (any gravity), or as pixels from the top-left corner
    (`nowe` only: elsewhere the region's place depends on the source's size)."""
    width, height, gravity = state["crop"]
    kind, fx, fy = gravity or state.get("gravity") or ("center", 0.0, 0.0)
    if width == 0 and height == 0:
        return {}
    if kind == "smart":
        raise BadRequest("crop: smart gravity is not supported")
    if 0 <= width < 1 and 0 <= height < 1:
        fw, fh = width or 1.0, height or 1.0
        x = _place(fw, kind, fx, "w", "e")
        y = _place(fh, kind, fy, "n", "s")
        return {"crop": ",".join(_fraction(value) for value in (x, y, fw, fh))}
    if width >= 1 and height >= 1 and kind == "nw":
        return {"crop": f"0,0,{round(width)},{round(height)}"}
    raise BadRequest(
        "crop: pixel sizes are supported with gravity nowe only, and may not be mixed with"
        " relative sizes or 0"
    )


def _place(size: float, kind: str, focal: float, low: str, high: str) -> float:
    """Where a crop of `size` (a fraction) starts along one axis, for a native gravity."""
    if kind == "focal":
        return min(max(focal - size / 2, 0.0), 1.0 - size)
    sides = "" if kind == "center" else kind  # the compass letters: n, se, w...
    if low in sides:
        return 0.0
    if high in sides:
        return 1.0 - size
    return (1.0 - size) / 2


def _watermark(
    value: tuple[float, str | None, float | None], configured: tuple[str, WatermarkSettings] | None
) -> dict[str, str]:
    """imgproxy multiplies the configured opacity by the URL's and places the mark where
    the URL says; a native `wm` is the configured mark as configured, so the URL may only
    restate it (opacity 1, the entry's position and scale) or turn it off (opacity 0)."""
    opacity, position, scale = value
    if opacity == 0:
        return {}
    if configured is None:
        raise BadRequest("watermark: no watermark is configured (dialects.imgproxy.watermark)")
    name, mark = configured
    if opacity != 1:
        raise BadRequest("watermark: an opacity other than 1 (the configured one) or 0")
    if position is not None and position != mark.position:
        raise BadRequest(f"watermark: the position must be the configured one ({mark.position})")
    if scale is not None and scale != mark.scale:
        raise BadRequest(f"watermark: the scale must be the configured one ({mark.scale:g})")
    return {"wm": name}


def _fraction(value: float) -> str:
    """0.25 -> '0.25', 1 -> '1.0': the native crop tells fractions by their point."""
    text = f"{value:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.9f}".rstrip("0").rstrip(".")
    return str(value)
