"""PNG plots of a run: learning curves and the confusion matrix.

matplotlib's Figure class draws off-screen without pyplot's global state, so it works in a
training container without a display. It is imported on first use: it takes half a second.
"""


def new_figure(**options):
    from matplotlib.figure import Figure

    return Figure(layout="tight", **options)


def plot_curves(history, path):
    """Loss (train and test) and test accuracy per epoch."""
    figure = new_figure(figsize=(9, 3.5))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    loss_axes.plot(epochs, [row["test_loss"] for row in history], "o-", label="test")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [row["test_accuracy"] for row in history], "o-", color="C2")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Test accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.savefig(path, dpi=100)
    return path


def plot_confusion_matrix(matrix, path):
    """matrix[true][predicted] counts as a heat map, with the counts written in the cells."""
    figure = new_figure(figsize=(5.5, 5))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    classes = range(len(matrix))
    threshold = max(map(max, matrix)) / 2
    for true in classes:
        for predicted in classes:
            count = matrix[true][predicted]
            color = "white" if count > threshold else "black"
            axes.text(predicted, true, count, ha="center", va="center", fontsize=7, color=color)
    axes.set(
        xticks=classes,
        yticks=classes,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (test set)",
    )
    figure.savefig(path, dpi=100)
    return path
