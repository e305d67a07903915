"""Garments drawn from parameters, not from the dataset: the ten classes' silhouettes in several cuts each.

Every cut is a function of a random generator returning a `Shape` in a unit square (y down): the
silhouette (polygons and thick strokes, minus holes), the inner lines a drawing shows (seams, plackets,
laces, collars) and accent areas (a tie, a lining, a sole). Nothing is traced from Fashion-MNIST: the
proportions are what a pattern maker's sketch gives a garment (sleeve length and angle, neckline, hem,
opening; heel, shaft, straps and toe for footwear; handles for bags), each drawn from a range.

`CUTS[label]` lists each class's cuts; the last one of each is held out of training (fmnist.pictures.garments.render
says which families train and which validate). `OBJECTS` draws things that are not garments the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Pts = list  # [(x, y), ...] in the unit square


@dataclass
class Shape:
    polys: list = field(default_factory=list)  # filled silhouette parts
    strokes: list = field(default_factory=list)  # (points, width): silhouette parts drawn as thick lines
    holes: list = field(default_factory=list)  # polygons cut out of the silhouette
    details: list = field(default_factory=list)  # (points, width): inner lines, in the ink colour
    accents: list = field(default_factory=list)  # polygons inside, in a second colour


def _mirror(pts: Pts, cx: float = 0.5) -> Pts:
    return [(2 * cx - x, y) for x, y in reversed(pts)]


def _arc(cx, cy, rx, ry, a0, a1, n=10) -> Pts:
    t = np.linspace(np.radians(a0), np.radians(a1), n)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in t]


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


# --------------------------------------------------------------------------- tops (front view)


def top(rng, sleeve: str, neck: str, length: float, flare: float = 1.0, opening: str = "") -> Shape:
    """A front view of anything worn on the torso: sleeve none/short/long, neck crew/v/scoop/turtle/hood/collar."""
    cx, y0 = 0.5, _u(rng, 0.1, 0.16)
    sh, nw, drop = _u(rng, 0.16, 0.21), _u(rng, 0.055, 0.085), _u(rng, 0.02, 0.05)
    bw = sh * _u(rng, 0.85, 1.0)
    yh = min(0.97, y0 + length)
    hw = bw * flare * _u(rng, 0.95, 1.08)
    s = (cx - sh, y0 + drop)
    left = [(cx - nw, y0), s]
    if sleeve == "none":
        arm_y = y0 + _u(rng, 0.2, 0.26)
        left[1] = (cx - nw - _u(rng, 0.02, 0.05), y0 + 0.01)
        left += [(cx - bw + 0.035, y0 + 0.12), (cx - bw, arm_y)]
    else:
        long_ = sleeve == "long"
        ln = _u(rng, 0.42, 0.6) if long_ else _u(rng, 0.1, 0.18)
        a = np.radians(_u(rng, 8, 30) if long_ else _u(rng, 35, 60))
        sw = _u(rng, 0.09, 0.13)
        d, n = np.array([-np.sin(a), np.cos(a)]), np.array([np.cos(a), np.sin(a)])
        c1 = np.array(s) + ln * d
        cw = sw * (_u(rng, 0.6, 0.85) if long_ else _u(rng, 0.8, 1.0))
        c2 = c1 + cw * n
        arm_y = y0 + drop + sw / max(np.sin(a) + 0.3, 0.5)
        left += [tuple(c1), tuple(c2), (cx - bw, min(arm_y, y0 + 0.3))]
    left += [(cx - hw, yh), (cx, yh)]
    shape = Shape()
    if neck == "v":
        neckline = [(cx, y0 + _u(rng, 0.1, 0.18))]
    elif neck == "scoop":
        neckline = _arc(cx, y0, nw + 0.01, _u(rng, 0.07, 0.12), 0, 180)
    elif neck == "turtle":
        up = _u(rng, 0.04, 0.07)
        left[0] = (cx - nw, y0 - up)
        neckline = [(cx + nw, y0 - up), (cx, y0 - up + 0.01)]
        shape.details.append(([(cx - nw, y0 - 0.005), (cx + nw, y0 - 0.005)], 0.012))
    elif neck == "hood":
        hood = _arc(cx, y0 + 0.02, nw + _u(rng, 0.03, 0.05), _u(rng, 0.1, 0.14), 180, 360)
        shape.polys.append(hood + [(cx, y0 + 0.05)])
        neckline = [(cx, y0 + 0.06)]
        shape.details.append(([(cx - 0.02, y0 + 0.07), (cx - 0.025, y0 + 0.2)], 0.008))
    else:  # crew or collar
        neckline = _arc(cx, y0, nw, _u(rng, 0.03, 0.05), 0, 180)
    shape.polys.insert(0, left + _mirror(left, cx)[1:] + neckline)
    if neck == "collar":  # two collar points over the neckline
        for sgn in (-1, 1):
            shape.details.append(([(cx + sgn * nw, y0), (cx + sgn * 0.015, y0 + _u(rng, 0.08, 0.11)),
                                   (cx, y0 + 0.04)], 0.01))
    if opening:
        top_y = y0 + 0.04
        if opening == "open":  # the two fronts apart: the lining shows between them
            g0, g1 = _u(rng, 0.01, 0.03), _u(rng, 0.04, 0.09)
            shape.accents.append([(cx - g0, top_y), (cx + g0, top_y), (cx + g1, yh), (cx - g1, yh)])
            for sgn in (-1, 1):  # lapels folded back
                shape.details.append(([(cx + sgn * nw, y0), (cx + sgn * (nw + 0.05), y0 + 0.16), (cx + sgn * g0, y0 + 0.25)],
                                      0.01))
        else:
            shape.details.append(([(cx, top_y), (cx, yh)], 0.01 if opening == "zip" else 0.006))
        if opening in ("buttons", "double"):
            k = int(rng.integers(4, 7))
            for i in range(k):
                y = top_y + 0.04 + i * (yh - top_y - 0.08) / max(k - 1, 1)
                xs = (cx - 0.05, cx + 0.05) if opening == "double" else (cx + 0.015,)
                for x in xs:
                    shape.details.append(([(x - 0.008, y), (x + 0.008, y)], 0.016))
    return shape


def tee(rng):
    return top(rng, "short", str(rng.choice(["crew", "v"])), _u(rng, 0.62, 0.78))


def blouse(rng):
    return top(rng, "short", "scoop", _u(rng, 0.55, 0.7), flare=_u(rng, 1.05, 1.25))


def tank(rng):
    return top(rng, "none", str(rng.choice(["scoop", "v"])), _u(rng, 0.62, 0.78))


def sweater(rng):
    s = top(rng, "long", "crew", _u(rng, 0.6, 0.72))
    _rib(s, rng)
    return s


def hoodie(rng):
    s = top(rng, "long", "hood", _u(rng, 0.58, 0.7))
    s.details.append(([(0.38, 0.62), (0.62, 0.62)], 0.01))  # the front pocket
    return s


def turtleneck(rng):
    s = top(rng, "long", "turtle", _u(rng, 0.6, 0.72))
    _rib(s, rng)
    return s


def _rib(s: Shape, rng) -> None:
    poly = s.polys[0]
    y = max(p[1] for p in poly) - _u(rng, 0.04, 0.06)
    s.details.append(([(0.5 - 0.2, y), (0.5 + 0.2, y)], 0.008))


def jacket(rng):
    return top(rng, "long", "collar", _u(rng, 0.6, 0.72), opening="zip")


def trench(rng):
    s = top(rng, "long", "collar", _u(rng, 0.78, 0.86), flare=_u(rng, 1.05, 1.25), opening="double")
    y = _u(rng, 0.42, 0.5)
    s.accents.append([(0.28, y), (0.72, y), (0.72, y + 0.03), (0.28, y + 0.03)])  # the belt
    return s


def open_coat(rng):
    return top(rng, "long", "crew", _u(rng, 0.76, 0.86), flare=_u(rng, 1.1, 1.3), opening="open")


def shirt_long(rng):
    return top(rng, "long", "collar", _u(rng, 0.64, 0.76), opening="buttons")


def shirt_short(rng):
    return top(rng, "short", "collar", _u(rng, 0.64, 0.76), opening="buttons")


def shirt_tie(rng):
    s = top(rng, "long", "collar", _u(rng, 0.64, 0.76))
    y0 = min(p[1] for p in s.polys[0]) + 0.05
    w, ln = _u(rng, 0.025, 0.04), _u(rng, 0.32, 0.42)
    s.accents.append([(0.5 - 0.015, y0), (0.5 + 0.015, y0), (0.5 + w, y0 + ln - 0.05), (0.5, y0 + ln),
                      (0.5 - w, y0 + ln - 0.05)])
    return s


def dress(rng, sleeve: str, neck: str, waist: float, hem: float, flare: float) -> Shape:
    cx, y0 = 0.5, _u(rng, 0.06, 0.1)
    t = top(rng, sleeve, neck, waist)
    bodice = t.polys[0]
    yw = max(p[1] for p in bodice)
    ww = max(abs(p[0] - cx) for p in bodice if p[1] >= yw - 1e-6) * _u(rng, 0.8, 0.95)
    skirt = [(cx - ww, yw - 0.01), (cx + ww, yw - 0.01), (cx + ww * flare, y0 + hem), (cx - ww * flare, y0 + hem)]
    t.polys.append(skirt)
    t.details.append(([(cx - ww, yw), (cx + ww, yw)], 0.008))
    return t


def aline(rng):
    return dress(rng, "short", str(rng.choice(["crew", "v"])), _u(rng, 0.26, 0.32), _u(rng, 0.78, 0.86),
                 _u(rng, 1.8, 2.3))


def sheath(rng):
    return dress(rng, "none", str(rng.choice(["scoop", "crew"])), _u(rng, 0.26, 0.32), _u(rng, 0.78, 0.88),
                 _u(rng, 1.05, 1.35))


def maxi(rng):
    return dress(rng, "none", "v", _u(rng, 0.24, 0.3), _u(rng, 0.86, 0.9), _u(rng, 2.3, 3.0))


# --------------------------------------------------------------------------- trousers


def trousers(rng, hem_w: float, flare_out: float) -> Shape:
    cx, y0, y1 = 0.5, _u(rng, 0.04, 0.08), _u(rng, 0.92, 0.97)
    w = _u(rng, 0.13, 0.17)
    crotch = y0 + _u(rng, 0.24, 0.32)
    hip = w + _u(rng, 0.0, 0.02)
    gap = _u(rng, 0.005, 0.03)
    outer = cx - max(hip, gap + hem_w) - flare_out
    left = [(cx - w, y0), (cx - hip, y0 + 0.15), (outer, y1), (outer + hem_w, y1), (cx - gap, crotch + 0.05), (cx, crotch)]
    s = Shape(polys=[left + _mirror(left)[1:] + [(cx + w, y0)]])
    s.details.append(([(cx - w, y0 + 0.05), (cx + w, y0 + 0.05)], 0.008))  # waistband
    s.details.append(([(cx, y0 + 0.05), (cx, crotch - 0.04)], 0.006))  # fly
    return s


def straight(rng):
    return trousers(rng, _u(rng, 0.12, 0.15), 0.0)


def tapered(rng):
    return trousers(rng, _u(rng, 0.07, 0.1), -0.02)


def wide(rng):
    return trousers(rng, _u(rng, 0.17, 0.22), _u(rng, 0.06, 0.1))


# --------------------------------------------------------------------------- footwear (side view, toe left)


def _sole(x0, x1, y, th, heel=0.0) -> Pts:
    return [(x0, y), (x1, y - heel), (x1, y + th), (x0 + 0.03, y + th), (x0, y + th * 0.6)]


def sneaker(rng, high: float = 0.0, laces: bool = True) -> Shape:
    y, th = _u(rng, 0.66, 0.72), _u(rng, 0.06, 0.1)
    top_ = _u(rng, 0.36, 0.44) - high
    upper = [(0.07, y), (0.1, y - 0.09), (0.3, y - 0.15), (0.52, top_ + 0.02), (0.68, top_ + 0.05), (0.86, top_),
             (0.92, y - 0.08), (0.93, y)]
    s = Shape(polys=[upper, _sole(0.06, 0.94, y, th)])
    s.details.append(([(0.08, y + th * 0.4), (0.93, y + th * 0.4)], 0.008))
    if laces:
        for i in range(4):
            x = 0.32 + i * 0.06
            s.details.append(([(x, y - 0.14 - i * 0.045), (x + 0.05, y - 0.1 - i * 0.045)], 0.012))
    else:  # an elastic side panel
        s.accents.append([(0.55, top_ + 0.05), (0.62, top_ + 0.06), (0.6, y - 0.05), (0.54, y - 0.05)])
    return s


def runner(rng):
    return sneaker(rng)


def court(rng):
    s = sneaker(rng)
    s.details.append(([(0.45, 0.6), (0.62, 0.52), (0.8, 0.55)], 0.014))  # a side stripe
    return s


def slipon(rng):
    return sneaker(rng, high=-0.05, laces=False)


def sandal(rng, heel: float) -> Shape:
    y = _u(rng, 0.72, 0.78)
    th = _u(rng, 0.025, 0.05)
    if heel:
        sole = [(0.06, y), (0.38, y), (0.88, y - heel), (0.9, y - heel + th), (0.4, y + th), (0.06, y + th)]
        s = Shape(polys=[sole])
        s.strokes.append(([(0.85, y - heel + th), (0.86, y + th)], _u(rng, 0.02, 0.05)))  # the heel
    else:
        s = Shape(polys=[_sole(0.06, 0.94, y, th)])
    bottom = y - (heel if heel else 0)
    w = _u(rng, 0.02, 0.035)
    s.strokes.append((_arc(0.22, y, 0.13, _u(rng, 0.08, 0.13), 180, 360), w))  # over the toes
    xa = 0.74 if not heel else 0.7
    ya = bottom - _u(rng, 0.18, 0.28)
    s.strokes.append(([(0.5, y - 0.01 - heel * 0.2), (xa, ya), (0.9, ya + 0.02), (0.9, bottom)], w))  # ankle strap
    if rng.random() < 0.5:
        s.strokes.append(([(0.36, y - heel * 0.05), (0.45, y - 0.12 - heel * 0.1), (0.55, y - heel * 0.3)], w))
    return s


def flat_sandal(rng):
    return sandal(rng, 0.0)


def heel_sandal(rng):
    return sandal(rng, _u(rng, 0.2, 0.32))


def flipflop(rng):
    y, th = _u(rng, 0.7, 0.76), _u(rng, 0.05, 0.08)
    s = Shape(polys=[_sole(0.06, 0.94, y, th)])
    post = (_u(rng, 0.25, 0.32), y)
    w = _u(rng, 0.025, 0.04)
    s.strokes.append(([post, (0.45, y - _u(rng, 0.1, 0.16)), (0.68, y)], w))
    return s


def boot(rng, heel: float, kind: str) -> Shape:
    y, th = _u(rng, 0.72, 0.78), _u(rng, 0.05, 0.09)
    shaft = _u(rng, 0.12, 0.2)
    heel_h = heel
    upper = [(0.06, y), (0.1, y - 0.1), (0.32, y - 0.16 - heel_h * 0.4), (0.48, y - 0.26 - heel_h * 0.5),
             (0.5, shaft), (0.86, shaft), (0.88, y - heel_h - 0.05), (0.92, y - heel_h)]
    s = Shape(polys=[upper])
    if heel_h:
        s.polys.append([(0.06, y), (0.5, y - heel_h * 0.3), (0.92, y - heel_h), (0.92, y - heel_h + th),
                        (0.5, y - heel_h * 0.3 + th), (0.06, y + th)])
        s.polys.append([(0.8, y - heel_h), (0.92, y - heel_h), (0.9, y + th), (0.8, y + th)])
    elif kind == "combat":  # a lugged sole
        zig = [(0.06 + i * 0.044, y + th + (0.025 if i % 2 else 0.0)) for i in range(20)]
        s.polys.append([(0.06, y), (0.93, y)] + list(reversed(zig)))
    else:
        s.polys.append(_sole(0.06, 0.93, y, th))
    if kind == "chelsea":
        s.accents.append([(0.56, shaft), (0.66, shaft), (0.64, y - 0.2 - heel_h * 0.5), (0.6, y - 0.2 - heel_h * 0.5)])
        s.strokes.append(([(0.84, shaft + 0.02), (0.86, shaft - 0.05)], 0.03))  # pull tab
    if kind == "combat":
        for i in range(5):
            yy = shaft + 0.05 + i * 0.07
            s.details.append(([(0.5 - i * 0.03, yy), (0.58 - i * 0.03, yy + 0.03)], 0.012))
    return s


def chelsea(rng):
    return boot(rng, 0.0, "chelsea")


def bootie(rng):
    return boot(rng, _u(rng, 0.1, 0.18), "plain")


def combat(rng):
    return boot(rng, 0.0, "combat")


# --------------------------------------------------------------------------- bags


def tote(rng):
    t, b = _u(rng, 0.36, 0.46), _u(rng, 0.88, 0.95)
    wt, wb = _u(rng, 0.26, 0.34), _u(rng, 0.32, 0.4)
    s = Shape(polys=[[(0.5 - wt, t), (0.5 + wt, t), (0.5 + wb, b), (0.5 - wb, b)]])
    h = _u(rng, 0.16, 0.26)
    for x in (0.5 - wt * 0.45, 0.5 + wt * 0.45):
        s.strokes.append((_arc(x, t, wt * 0.3, h, 180, 360), _u(rng, 0.02, 0.035)))
    return s


def handbag(rng):
    t, b = _u(rng, 0.4, 0.5), _u(rng, 0.86, 0.93)
    w = _u(rng, 0.3, 0.4)
    body = [(0.5 - w * 0.85, t), (0.5 - w, b - 0.12)] + _arc(0.5, b - 0.12, w, 0.12, 180, 0) + \
        [(0.5 + w, b - 0.12), (0.5 + w * 0.85, t)]
    s = Shape(polys=[body])
    s.strokes.append((_arc(0.5, t, w * _u(rng, 0.4, 0.6), _u(rng, 0.18, 0.28), 180, 360), _u(rng, 0.025, 0.04)))
    s.details.append(([(0.5 - w * 0.85, t + 0.12), (0.5 + w * 0.85, t + 0.12)], 0.01))  # the flap
    return s


def crossbody(rng):
    t, b = _u(rng, 0.5, 0.58), _u(rng, 0.8, 0.9)
    w = _u(rng, 0.2, 0.3)
    s = Shape(polys=[[(0.5 - w, t), (0.5 + w, t), (0.5 + w, b), (0.5 - w, b)]])
    s.accents.append([(0.5 - w, t), (0.5 + w, t), (0.5 + w, t + (b - t) * 0.5), (0.5, t + (b - t) * 0.6),
                      (0.5 - w, t + (b - t) * 0.5)])  # the flap
    top_y = _u(rng, 0.05, 0.12)
    s.strokes.append(([(0.5 - w + 0.01, t), (0.5, top_y), (0.5 + w - 0.01, t)], _u(rng, 0.012, 0.02)))
    return s


# label -> cuts; the last cut of each class is held out of training
CUTS: dict = {
    0: (tee, tank, blouse), 1: (straight, wide, tapered), 2: (sweater, turtleneck, hoodie), 3: (aline, maxi, sheath),
    4: (trench, open_coat, jacket), 5: (flipflop, heel_sandal, flat_sandal), 6: (shirt_long, shirt_tie, shirt_short),
    7: (runner, slipon, court), 8: (tote, crossbody, handbag), 9: (bootie, combat, chelsea),
}
