"""PNG plots of a run: learning curves, the confusion matrix, and examples with predictions.

matplotlib's Figure class draws off-screen without pyplot's global state, so it works in a
training container without a display. It is imported on first use: it takes half a second.
"""


def new_figure(**options):
    from matplotlib.figure import Figure

    return Figure(layout="tight", **options)


def plot_curves(history, path):
    """Every metric of metrics.csv per epoch: the losses on one log scale, the others apart."""
    losses = [name for name in history[0] if name.endswith("_loss")]
    others = [name for name in history[0] if name != "epoch" and name not in losses]
    figure = new_figure(figsize=(4.5 * (1 + len(others)), 3.5))
    all_axes = figure.subplots(1, 1 + len(others), squeeze=False)[0]
    epochs = [row["epoch"] for row in history]
    for axes, names in zip(all_axes, [losses, *([name] for name in others)], strict=True):
        for name in names:
            axes.plot(epochs, [row[name] for row in history], "o-", label=name)
        axes.set(xlabel="epoch", title=", ".join(names))
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    all_axes[0].set(yscale="log", title="Loss")
    all_axes[0].legend()
    figure.savefig(path, dpi=100)
    return path


def plot_confusion_matrix(matrix, classes, path, split="val"):
    """matrix[true][predicted] counts as a heat map, with the counts written in the cells."""
    size = max(5.5, 0.35 * len(classes))
    figure = new_figure(figsize=(size, size * 0.9))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    threshold = max(map(max, matrix)) / 2
    for true, counts in enumerate(matrix):
        for predicted, count in enumerate(counts):
            color = "white" if count > threshold else "black"
            axes.text(predicted, true, count, ha="center", va="center", fontsize=7, color=color)
    ticks = range(len(classes))
    axes.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    axes.set_xticklabels(classes, rotation=90 if max(map(len, classes)) > 2 else 0)
    axes.set_yticklabels(classes)
    axes.set_title(f"Confusion matrix ({split} set)")
    figure.savefig(path, dpi=100)
    return path


def plot_examples(images, captions, path, title):
    """A grid of images (n, channels, height, width), each under its caption."""
    columns = min(8, len(images))
    rows = -(-len(images) // columns)
    figure = new_figure(figsize=(1.4 * columns, 1.6 * rows + 0.4))
    figure.suptitle(title)
    for position, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.axis("off")
        if position < len(images):
            image = images[position].float()
            image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-6)
            pixels = image[0] if len(image) == 1 else image[:3].permute(1, 2, 0)
            axes.imshow(pixels.numpy(), cmap="gray" if len(image) == 1 else None)
            axes.set_title(captions[position], fontsize=8)
    figure.savefig(path, dpi=100)
    return path
