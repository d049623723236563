"""Synthetic MNIST: handwritten-looking digits drawn as strokes (arcs and lines) under a random
slant, rotation, scale, position, wobble, stroke width and noise, so a CNN has to learn shapes, as
on real MNIST. Some are hard to read, as on real MNIST: a stretch of the pen's path left out (a 9
with a short tail, an open 0), a stray mark beside the digit, faint ink. So a CNN learns for
several epochs and still confuses a few pairs. scripts/prepare_dataset.py writes them in MNIST's
own files.
"""

import numpy as np

SIZE = 28  # pixels per side, as in MNIST
CHUNK = 4096  # images generated at a time: bounds memory, and the output does not depend on it


def arc(cx, cy, rx, ry, start, end):
    """Points of an elliptic arc; angles in degrees, y grows downwards (90 = bottom)."""
    angles = np.radians(np.linspace(start, end, 48))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def line(*points):
    return np.array(points, dtype=float).reshape(-1, 2)


def stroke(*parts):
    return np.concatenate(parts)


# Ways of writing each digit; a way is a list of strokes (polylines) in a unit box, x to the
# right, y downwards.
GLYPHS = [
    [  # 0
        [arc(0.5, 0.5, 0.28, 0.45, 0, 360)],
        [arc(0.5, 0.5, 0.3, 0.45, 250, 625)],  # overshoots where the pen started
    ],
    [  # 1
        [line((0.5, 0.05), (0.5, 0.95))],
        [line((0.32, 0.22), (0.52, 0.05), (0.52, 0.95))],
        [line((0.32, 0.22), (0.52, 0.05), (0.52, 0.95)), line((0.32, 0.95), (0.72, 0.95))],
    ],
    [  # 2
        [stroke(arc(0.5, 0.3, 0.27, 0.25, 170, 380), line((0.22, 0.95), (0.8, 0.95)))],
        [
            stroke(
                arc(0.5, 0.3, 0.27, 0.25, 170, 400),
                line((0.22, 0.92)),
                arc(0.5, 0.95, 0.3, 0.1, 180, 360),
            )
        ],
    ],
    [  # 3
        [stroke(arc(0.5, 0.28, 0.25, 0.22, 200, 450), arc(0.5, 0.72, 0.28, 0.23, 270, 520))],
        [
            stroke(
                line((0.25, 0.05), (0.75, 0.05), (0.45, 0.42)), arc(0.5, 0.7, 0.28, 0.25, 250, 520)
            )
        ],
    ],
    [  # 4
        [line((0.66, 0.95), (0.66, 0.05), (0.18, 0.66), (0.84, 0.66))],
        [line((0.28, 0.05), (0.22, 0.6), (0.84, 0.6)), line((0.68, 0.12), (0.66, 0.95))],
    ],
    [  # 5
        [
            stroke(
                line((0.76, 0.05), (0.32, 0.05), (0.28, 0.45)), arc(0.5, 0.67, 0.27, 0.28, 215, 505)
            )
        ],
    ],
    [  # 6
        [stroke(arc(0.62, 0.62, 0.4, 0.57, 265, 180), arc(0.49, 0.7, 0.27, 0.24, 180, -180))],
        [stroke(line((0.62, 0.05), (0.25, 0.65)), arc(0.49, 0.72, 0.26, 0.23, 190, -170))],
    ],
    [  # 7
        [line((0.2, 0.06), (0.8, 0.06), (0.42, 0.95))],
        [line((0.2, 0.06), (0.8, 0.06), (0.42, 0.95)), line((0.38, 0.5), (0.76, 0.5))],
    ],
    [  # 8
        [arc(0.5, 0.28, 0.22, 0.22, 0, 360), arc(0.5, 0.72, 0.27, 0.23, 0, 360)],
    ],
    [  # 9
        [arc(0.48, 0.3, 0.26, 0.24, 0, 360), line((0.74, 0.3), (0.66, 0.95))],
        [arc(0.48, 0.3, 0.26, 0.24, 0, 360), arc(0.4, 0.3, 0.34, 0.65, 0, 80)],
    ],
]
SPACING = 0.04  # between points along a stroke, in glyph units: under 1.5 stroke sigmas
MAX_GAP = 0.5  # the largest share of a digit's path left out
MARK_SHARE = 0.35  # of images with a stray mark
MARK_POINTS = 12


def resample(polyline):
    """Points every SPACING along a polyline, so ink is even whatever the vertices."""
    lengths = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    distance = np.concatenate([[0.0], np.cumsum(lengths)])
    targets = np.arange(0.0, distance[-1] + 1e-9, SPACING)
    return np.stack([np.interp(targets, distance, polyline[:, i]) for i in range(2)], axis=1)


def glyph_points(strokes):
    """The ink of one way of writing a digit, centred on (0, 0)."""
    return np.concatenate([resample(s) for s in strokes]).astype(np.float32) - 0.5


GLYPH_POINTS = [[glyph_points(strokes) for strokes in ways] for ways in GLYPHS]


def random_styles(rng, count):
    """One random writing style per image (vectors of length `count`)."""
    styles = {
        "way": rng.random(count),  # which way of writing the digit, as a fraction
        "height": rng.uniform(15.0, 21.0, count),  # pixels; MNIST digits fit a 20x20 box
        "aspect": rng.uniform(0.75, 1.2, count),
        "slant": rng.uniform(-0.35, 0.35, count),
        "rotation": np.radians(rng.uniform(-15.0, 15.0, count)),
        "wobble": rng.uniform(0.0, 0.06, (count, 2)),
        "wobble_frequency": rng.uniform(0.5, 1.5, (count, 2)),
        "wobble_phase": rng.uniform(0.0, 2 * np.pi, (count, 2)),
        "shift": rng.uniform(-2.0, 2.0, (count, 2)),
        "width": rng.uniform(0.65, 1.25, count),  # stroke sigma in pixels
        "ink": rng.uniform(1.4, 2.2, count),
        "noise": rng.uniform(0.0, 0.12, count),
        # A gap in the pen's path: a fraction of the glyph's points, from a random place.
        "gap": rng.uniform(0.0, 1.0, count) ** 1.5 * MAX_GAP,
        "gap_start": rng.random(count),
        # A stray mark: a short line at a random place, in some images only.
        "mark": (rng.random(count) < MARK_SHARE) * rng.uniform(0.5, 1.0, count),
        "mark_from": rng.uniform(2.0, SIZE - 3.0, (count, 2)),
        "mark_angle": rng.uniform(0.0, np.pi, count),
        "mark_length": rng.uniform(4.0, 11.0, count),
    }
    return {key: value.astype(np.float32) for key, value in styles.items()}


def draw(points, style):
    """Draw `n` images of one glyph, each in its own style: (n, SIZE, SIZE) floats in 0..1.

    Every point along the strokes adds a Gaussian blob of ink; the blobs are separable, so an
    image is one small matrix product (columns x rows) instead of a loop over pixels.
    """
    x, y = points[:, 0], points[:, 1]  # centred glyph coordinates, shape (k,)
    wobble, frequency, phase = style["wobble"], style["wobble_frequency"], style["wobble_phase"]
    x = x + wobble[:, :1] * np.sin(2 * np.pi * frequency[:, :1] * y + phase[:, :1])
    y = y + wobble[:, 1:] * np.sin(2 * np.pi * frequency[:, 1:] * x + phase[:, 1:])
    height = style["height"][:, None]
    x, y = x * height * style["aspect"][:, None], y * height
    x = x + style["slant"][:, None] * y
    cos, sin = np.cos(style["rotation"])[:, None], np.sin(style["rotation"])[:, None]
    x, y = cos * x - sin * y, sin * x + cos * y
    centre = (SIZE - 1) / 2
    x = x + centre + style["shift"][:, :1]
    y = y + centre + style["shift"][:, 1:]
    # Ink per point: 0 along the gap; then the stray mark's points, 0 where there is none.
    where = np.linspace(0.0, 1.0, points.shape[0], dtype=np.float32)
    into_gap = (where - style["gap_start"][:, None]) % 1.0
    weight = (into_gap >= style["gap"][:, None]).astype(np.float32)
    along = np.linspace(0.0, 1.0, MARK_POINTS, dtype=np.float32) * style["mark_length"][:, None]
    mark_x = style["mark_from"][:, :1] + along * np.cos(style["mark_angle"])[:, None]
    mark_y = style["mark_from"][:, 1:] + along * np.sin(style["mark_angle"])[:, None]
    x, y = np.concatenate([x, mark_x], axis=1), np.concatenate([y, mark_y], axis=1)
    mark_ink = np.repeat(style["mark"][:, None], MARK_POINTS, axis=1)
    weight = np.concatenate([weight, mark_ink], axis=1)

    pixels = np.arange(SIZE, dtype=np.float32)
    scale = -0.5 / style["width"][:, None, None] ** 2  # width = the blob's sigma

    def blobs(coordinate):  # (n, k, SIZE); the floor keeps floats normal (subnormals are slow)
        return np.exp(np.maximum(np.square(pixels - coordinate[:, :, None]) * scale, -20.0))

    columns, rows = blobs(x) * weight[:, :, None], blobs(y)
    ink = rows.transpose(0, 2, 1) @ columns  # (n, SIZE rows, SIZE columns)
    # Blobs overlap along a stroke; scale so that a stroke's centre line reaches `ink`.
    step = SPACING * style["height"][:, None, None]
    ink *= step / (style["width"][:, None, None] * np.sqrt(2 * np.pi)) * style["ink"][:, None, None]
    return np.clip(ink, 0.0, 1.0)


def synthetic_digits(count, seed):
    """(images uint8 (count, 28, 28), labels uint8 (count,)), the same for the same seed."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)  # balanced classes
    styles = random_styles(rng, count)
    images = np.empty((count, SIZE, SIZE), dtype=np.uint8)
    for start in range(0, count, CHUNK):
        chunk = slice(start, min(start + CHUNK, count))
        canvas = np.empty((chunk.stop - start, SIZE, SIZE), dtype=np.float32)
        ways = styles["way"][chunk]
        for digit, points_of_ways in enumerate(GLYPH_POINTS):
            for way, points in enumerate(points_of_ways):
                fraction = way / len(points_of_ways), (way + 1) / len(points_of_ways)
                selected = (labels[chunk] == digit) & (ways >= fraction[0]) & (ways < fraction[1])
                (members,) = np.nonzero(selected)
                style = {key: value[start + members] for key, value in styles.items()}
                canvas[members] = draw(points, style)
        noise = rng.standard_normal(canvas.shape, dtype=np.float32)
        canvas += noise * styles["noise"][chunk, None, None]
        images[chunk] = np.rint(np.clip(canvas, 0.0, 1.0) * 255)
    return images, labels
