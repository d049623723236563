"""Benchmark real-sized data (issue 20): peak memory and images/s training on 20,000 JPEGs of
224x224, against a plain torchvision reference loop, and loading a 1,000,000-row CSV.

    python benchmarks/data.py [--images 20000] [--rows 1000000] [--before REV]

Run it with an interpreter that has the rendered project's requirements. It renders the images
and tabular tasks into a temporary folder and prints Markdown rows (appended to
benchmarks/LATEST.md). Peak memory is the peak resident set of the measured process and its
children (wait4). --before REV also measures the images task of git revision REV (the
in-memory design) on a tenth of the images, where it fits.

The reference loop is what a practitioner writes by hand: torchvision's ImageFolder (Pillow
decoding) + DataLoader (same batch size and workers, shuffled) + the same model, loss and
optimizer step, the same transforms. Both rates are training images per second over one epoch's
training steps, from the loop's first batch to its last.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

REFERENCE = textwrap.dedent(
    """
    import sys, time, argparse
    sys.path.insert(0, "src")
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    import data, model as model_code
    from options import build_parser

    config = build_parser().parse_args(sys.argv[2:])
    torch.manual_seed(0)
    folder = ImageFolder(sys.argv[1] + "/train")
    info = {"classes": folder.classes, "backbone": config.backbone, "pretrained": False,
            "image_size": config.image_size, "input_shape": [3, config.image_size,
            config.image_size], "mean": [0.5] * 3, "std": [0.25] * 3, "augment": True}
    transform = data.transform(info, augment=True)
    folder.transform = lambda image: transform(data.v2.functional.pil_to_tensor(image))
    loader = DataLoader(folder, batch_size=config.batch_size, shuffle=True,
                        num_workers=config.num_workers, drop_last=False)
    model = model_code.build(info, config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    seen, started = 0, None
    for images, targets in loader:
        started = started or time.monotonic()
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(targets)
    print(f"reference {seen / (time.monotonic() - started):.1f} examples/s")
    """
)


def measure(command, cwd):
    """(seconds, peak RSS in MiB, stdout) of a whole process."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{output[-2000:]}")
    return time.monotonic() - started, usage.ru_maxrss / 1024, output


def render(out, task, template=ROOT):
    subprocess.run(
        [PYTHON, "-m", "cookiecutter", "--no-input", str(template), "-o", str(out),
         f"task={task}", "experiment_tracking=none"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out / "sagemaker-mnist"


def jpeg_folders(dataset, count, size=224, classes=10):
    """`count` JPEGs of size x size in train/<class>/ folders (noise with a class tint)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % classes
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        pixels[..., label % 3] //= 2 + label // 3
        path = dataset / "train" / f"class {label}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def last_rate(output):
    rates = re.findall(r"([\d.]+) examples/s", output)
    return float(rates[-1])


def images_rows(scratch, count, before):
    project = render(scratch / "images", "images")
    dataset = scratch / "jpegs"
    jpeg_folders(dataset, count)
    workers = str(max(1, min(8, (os.cpu_count() or 1) - 1)))
    options = ["--image-size", "224", "--batch-size", "64", "--num-workers", workers]
    train = [PYTHON, "src/train.py", "--epochs", "1", "--data-dir", str(dataset),
             "--log-interval", "5", "--checkpoint-interval", "0", *options]  # fmt: skip
    seconds, peak, output = measure(train, project)
    rate = last_rate(output)
    (project / "reference.py").write_text(REFERENCE)
    _, reference_peak, reference_output = measure(
        [PYTHON, "reference.py", str(dataset), *options, "--lr", "0.01"], project
    )
    reference = last_rate(reference_output)
    rows = [
        f"| 6a peak RSS: `train.py --epochs 1` on {count:,} JPEGs 224×224 in class folders, "
        f"default backbone, `--image-size 224` (whole process, workers included) | 1 | "
        f"{peak:,.0f} MiB | — | ≤ 2.5 GiB | {'PASS' if peak <= 2560 else 'MISS'} |",
        f"| 6b training images/s on CPU, ours vs the reference loop (ImageFolder + DataLoader, "
        f"same model, batch 64, {workers} workers) | 1 / 1 | {rate:,.1f} | {reference:,.1f} | "
        f"ratio ≥ 0.95 | {'PASS' if rate >= 0.95 * reference else 'MISS'} "
        f"({rate / reference:.2f}) |",
        f"| 6c one epoch wall time of 6a, start-up and validation included | 1 | {seconds:.0f} s "
        f"| — | — | info |",
    ]
    if before:
        rows.append(before_row(scratch, count // 20, before))
    return rows


def before_row(scratch, count, revision):
    """The in-memory design at `revision`, on `count` and 2 x `count` images in its train.csv
    layout: its peak memory grows by the difference per `count` images."""
    template = scratch / "before-template"
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", template, revision],
                   check=True, capture_output=True)  # fmt: skip
    try:
        project = render(scratch / "before", "images", template)
        peaks = [before_peak(scratch, project, size) for size in (count, 2 * count)]
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", template])
    per_image = (peaks[1] - peaks[0]) / count
    at_20000 = (peaks[0] + per_image * (20000 - count)) / 1024
    return (
        f"| 6a′ before ({revision}, every image in memory): the same on {count:,} and "
        f"{2 * count:,} JPEGs | 1 | {peaks[0]:,.0f} and {peaks[1]:,.0f} MiB | — | "
        f"({per_image:.2f} MiB per image: ~{at_20000:.0f} GiB at 20,000) | info |"
    )


def before_peak(scratch, project, count):
    dataset = scratch / f"before-jpegs-{count}"
    jpeg_folders(dataset, count)
    rows = ["id,label"]
    (dataset / "flat").mkdir()
    for path in sorted((dataset / "train").glob("*/*.jpg")):
        path.rename(dataset / "flat" / path.name)
        rows.append(f"{path.stem},{path.parent.name}")
    shutil.rmtree(dataset / "train")
    (dataset / "flat").rename(dataset / "train")
    (dataset / "train.csv").write_text("\n".join(rows) + "\n")
    command = [PYTHON, "src/train.py", "--epochs", "1", "--data-dir", str(dataset),
               "--log-interval", "0"]  # fmt: skip
    return measure(command, project)[1]


def table_row(scratch, rows_count):
    project = render(scratch / "tabular", "tabular")
    columns = 50
    script = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd
        rng = np.random.default_rng(0)
        n = {rows_count}
        frame = pd.DataFrame(rng.normal(size=(n, {columns} - 4)).round(4),
                             columns=[f"f{{i}}" for i in range({columns} - 4)])
        frame.insert(0, "id", np.arange(n))
        frame["colour"] = rng.choice(["red", "green", "blue"], n)
        frame["city"] = [f"city{{i}}" for i in rng.integers(0, 5000, n)]
        frame["target"] = rng.integers(0, 2, n)
        frame.to_csv("{scratch}/table/train.csv", index=False)
        """
    )
    (scratch / "table").mkdir()
    subprocess.run([PYTHON, "-c", script], check=True)
    load = (
        "import sys; sys.path.insert(0, 'src'); import data; "
        f"d = data.load('{scratch}/table', 0.1, 0); print(len(d.train), d.info['input_shape'])"
    )
    seconds, peak, _ = measure([PYTHON, "-c", load], project)
    size = (scratch / "table" / "train.csv").stat().st_size / 2**20
    status = "PASS" if seconds <= 30 and peak <= 3072 else "MISS"
    return (
        f"| 8 tabular load: `data.load` of a {rows_count:,}-row × {columns}-column train.csv "
        f"({size:.0f} MiB; a 5,000-value text column), whole process | 1 | {seconds:.1f} s, "
        f"{peak:,.0f} MiB | — | ≤ 30 s, ≤ 3 GiB | {status} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--before", help="git revision of the in-memory design to compare")
    parser.add_argument("--skip-images", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="data-bench-") as scratch:
        scratch = Path(scratch)
        rows = [table_row(scratch, args.rows)]
        if not args.skip_images:
            rows = images_rows(scratch, args.images, args.before) + rows
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = f"\nData at real sizes, measured {stamp} ({os.cpu_count()} cores):\n\n"
    text += "| figure (what is timed) | runs | ours | baseline | target | status |\n"
    text += "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    print(text)
    with open(ROOT / "benchmarks" / "LATEST.md", "a") as latest:
        latest.write(text)


if __name__ == "__main__":
    main()
