"""Synthetic images: 10 classes, each a shape (disc, square, triangle, cross, ring) in a colour
(red, blue), at a random place and size, on noise. scripts/prepare_dataset.py writes them as files.
"""

import numpy as np

SIZE = 32  # pixels per side
SHAPES = ["disc", "square", "triangle", "cross", "ring"]
COLOURS = {"red": (220, 40, 40), "blue": (50, 80, 230)}
CLASSES = [f"{colour}-{shape}" for colour in COLOURS for shape in SHAPES]


def shape_mask(shape, centre, radius):
    """(SIZE, SIZE) booleans: where the shape is."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] - np.asarray(centre)[:, None, None]
    distance = np.hypot(x, y)
    if shape == "disc":
        return distance <= radius
    if shape == "ring":
        return (distance <= radius) & (distance >= radius * 0.55)
    if shape == "square":
        return (abs(x) <= radius * 0.8) & (abs(y) <= radius * 0.8)
    if shape == "triangle":  # pointing up
        return (y <= radius * 0.8) & (y >= -radius) & (abs(x) <= (y + radius) * 0.6)
    return ((abs(x) <= radius * 0.3) | (abs(y) <= radius * 0.3)) & (
        np.maximum(abs(x), abs(y)) <= radius
    )


def synthetic_images(count, seed):
    """(uint8 images (count, SIZE, SIZE, 3), labels (count,)): balanced classes."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(CLASSES))
    images = np.clip(rng.normal(40, 8, (count, SIZE, SIZE, 3)), 0, 255)
    for index, label in enumerate(labels):
        colour, shape = CLASSES[label].split("-")
        radius = rng.uniform(10, 14)
        centre = rng.uniform(radius, SIZE - radius, 2)
        tint = np.asarray(COLOURS[colour]) + rng.normal(0, 15, 3)
        images[index][shape_mask(shape, centre, radius)] = tint
    return images.astype(np.uint8), labels
