"""Things that are not garments, drawn from parameters like the garments (fmnist.pictures.garments.shapes.Shape).

Two families that share no kind: `TRAIN_OBJECTS` teach the model to be unsure (outlier exposure),
`EVAL_OBJECTS` measure the flag on kinds it never saw. Box-like things (a mug, a house, a lamp, a
clock) are here on purpose: a model that has seen only garments answers "Bag" for them.
"""

from __future__ import annotations

import numpy as np

from fmnist.pictures.garments.shapes import Shape, _arc, _u


def _circle(cx, cy, r, n=24):
    return _arc(cx, cy, r, r, 0, 360, n)


def mug(rng):
    w, t, b = _u(rng, 0.2, 0.3), _u(rng, 0.25, 0.35), _u(rng, 0.75, 0.85)
    s = Shape(polys=[[(0.45 - w, t), (0.45 + w, t), (0.45 + w, b), (0.45 - w, b)]])
    s.strokes.append((_arc(0.45 + w, (t + b) / 2, 0.12, (b - t) * 0.3, -90, 90), _u(rng, 0.03, 0.05)))
    return s


def bottle(rng):
    w, n = _u(rng, 0.12, 0.2), _u(rng, 0.04, 0.07)
    sh = _u(rng, 0.3, 0.45)
    return Shape(polys=[[(0.5 - n, 0.06), (0.5 + n, 0.06), (0.5 + n, sh - 0.1), (0.5 + w, sh), (0.5 + w, 0.94),
                         (0.5 - w, 0.94), (0.5 - w, sh), (0.5 - n, sh - 0.1)]])


def apple(rng):
    r = _u(rng, 0.28, 0.36)
    s = Shape(polys=[_circle(0.5, 0.55, r)])
    s.strokes.append(([(0.5, 0.55 - r + 0.02), (0.53, 0.55 - r - 0.1)], 0.03))
    s.polys.append(_arc(0.6, 0.55 - r - 0.05, 0.08, 0.035, 0, 360, 12))
    return s


def car(rng):
    y, h = _u(rng, 0.45, 0.55), _u(rng, 0.14, 0.2)
    body = [(0.05, y), (0.05, y + h), (0.95, y + h), (0.95, y), (0.72, y - 0.02), (0.62, y - _u(rng, 0.14, 0.2)),
            (0.32, y - _u(rng, 0.14, 0.2)), (0.22, y - 0.02)]
    s = Shape(polys=[body, _circle(0.25, y + h, 0.09), _circle(0.75, y + h, 0.09)])
    s.accents.append([(0.36, y - 0.13), (0.58, y - 0.13), (0.66, y - 0.02), (0.3, y - 0.02)])
    return s


def tree(rng):
    r = _u(rng, 0.22, 0.32)
    s = Shape(polys=[_circle(0.5, 0.15 + r, r), [(0.45, 0.5), (0.55, 0.5), (0.56, 0.95), (0.44, 0.95)]])
    return s


def hammer(rng):
    a = np.radians(_u(rng, -30, 30))
    s = Shape()
    s.strokes.append(([(0.5, 0.3), (0.5 + 0.6 * np.sin(a), 0.3 + 0.6 * np.cos(a))], _u(rng, 0.05, 0.08)))
    s.polys.append([(0.25, 0.15), (0.75, 0.15), (0.75, 0.3), (0.25, 0.3)])
    return s


def fish(rng):
    s = Shape(polys=[_arc(0.45, 0.5, _u(rng, 0.28, 0.35), _u(rng, 0.12, 0.2), 0, 360, 24),
                     [(0.7, 0.5), (0.95, 0.3), (0.95, 0.7)]])
    s.details.append((_circle(0.28, 0.47, 0.02, 8), 0.02))
    return s


def chair(rng):
    s = Shape(polys=[[(0.3, 0.55), (0.75, 0.55), (0.75, 0.62), (0.3, 0.62)], [(0.3, 0.1), (0.38, 0.1), (0.38, 0.6),
                                                                              (0.3, 0.6)]])
    for x in (0.32, 0.72):
        s.strokes.append(([(x, 0.6), (x, 0.92)], 0.035))
    return s


def house(rng):
    w = _u(rng, 0.28, 0.38)
    s = Shape(polys=[[(0.5 - w, 0.5), (0.5 + w, 0.5), (0.5 + w, 0.92), (0.5 - w, 0.92)],
                     [(0.5 - w - 0.06, 0.52), (0.5, _u(rng, 0.12, 0.25)), (0.5 + w + 0.06, 0.52)]])
    s.holes.append([(0.45, 0.7), (0.55, 0.7), (0.55, 0.92), (0.45, 0.92)])
    return s


def umbrella(rng):
    r = _u(rng, 0.36, 0.44)
    s = Shape(polys=[_arc(0.5, 0.45, r, r * 0.8, 180, 360, 20)])
    s.strokes.append(([(0.5, 0.45), (0.5, 0.85)] + _arc(0.45, 0.85, 0.05, 0.05, 0, 180, 6), 0.03))
    return s


def clock(rng):
    r = _u(rng, 0.32, 0.42)
    s = Shape(polys=[_circle(0.5, 0.5, r)])
    s.details += [([(0.5, 0.5), (0.5, 0.5 - r * 0.7)], 0.03), ([(0.5, 0.5), (0.5 + r * 0.5, 0.5 + r * 0.2)], 0.03)]
    return s


def key(rng):
    s = Shape()
    s.strokes.append((_circle(0.25, 0.5, 0.13), 0.05))
    s.strokes.append(([(0.38, 0.5), (0.9, 0.5)], 0.05))
    s.strokes += [([(0.8, 0.5), (0.8, 0.62)], 0.04), ([(0.7, 0.5), (0.7, 0.6)], 0.04)]
    return s


def guitar(rng):
    s = Shape(polys=[_circle(0.5, 0.72, 0.2), _circle(0.5, 0.5, 0.14)])
    s.strokes.append(([(0.5, 0.45), (0.5, 0.05)], 0.05))
    s.details.append((_circle(0.5, 0.66, 0.05, 12), 0.02))
    return s


def lamp(rng):
    return Shape(polys=[[(0.35, 0.1), (0.65, 0.1), (0.78, 0.4), (0.22, 0.4)], [(0.47, 0.4), (0.53, 0.4), (0.53, 0.85),
                                                                              (0.47, 0.85)],
                        [(0.3, 0.85), (0.7, 0.85), (0.7, 0.92), (0.3, 0.92)]])


def cat(rng):
    r = _u(rng, 0.28, 0.34)
    s = Shape(polys=[_circle(0.5, 0.55, r), [(0.5 - r, 0.45), (0.5 - r * 0.8, 0.1), (0.5 - r * 0.2, 0.3)],
                     [(0.5 + r, 0.45), (0.5 + r * 0.8, 0.1), (0.5 + r * 0.2, 0.3)]])
    s.details += [(_circle(0.4, 0.5, 0.03, 8), 0.03), (_circle(0.6, 0.5, 0.03, 8), 0.03)]
    return s


def bicycle(rng):
    s = Shape()
    s.strokes += [(_circle(0.22, 0.65, 0.17), 0.03), (_circle(0.78, 0.65, 0.17), 0.03),
                  ([(0.22, 0.65), (0.45, 0.65), (0.7, 0.4), (0.35, 0.4), (0.22, 0.65)], 0.03),
                  ([(0.78, 0.65), (0.68, 0.3), (0.6, 0.3)], 0.03)]
    return s


TRAIN_OBJECTS = {"mug": mug, "bottle": bottle, "apple": apple, "car": car, "tree": tree, "hammer": hammer,
                 "fish": fish, "chair": chair}
EVAL_OBJECTS = {"house": house, "umbrella": umbrella, "clock": clock, "key": key, "guitar": guitar, "lamp": lamp,
                "cat": cat, "bicycle": bicycle}
