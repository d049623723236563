"""A trained model on disk: model.pt (the weights, a plain state_dict) and model.json (what
rebuilding it takes: the data's info from data.py and the hyperparameters it was trained with;
and how many epochs it was trained: fewer than its options' `epochs` when a stop left it).

    import saved_model                                  # with src/ on sys.path
    model, about = saved_model.load("result/model")     # ready for inference, on the CPU
    about["data"]["classes"]                            # e.g. the class names
"""

import argparse
import json
import shutil
from datetime import datetime
from pathlib import Path

import torch

import checkpoint
import model as model_code

WEIGHTS, DESCRIPTION = "model.pt", "model.json"


def save(folder, weights, info, options, trained_epochs):
    """Write both files for a model's state_dict, each atomically (a reader sees the old file or
    the new one). A model of other options already there is kept (keep_earlier)."""
    folder = Path(folder)
    kept = keep_earlier(folder, options)
    if kept:
        print(f"kept the earlier model there, trained with other options, in {kept}")
    weights = {name: tensor.cpu().contiguous() for name, tensor in weights.items()}
    about = {"data": info, "options": options, "trained_epochs": trained_epochs}
    checkpoint.write_atomically(folder / WEIGHTS, checkpoint.save_tensors, weights)
    checkpoint.write_atomically(folder / DESCRIPTION, checkpoint.write_json, about)
    return [folder / WEIGHTS, folder / DESCRIPTION]


def keep_earlier(folder, options):
    """A model in `folder` from a run of other options (an earlier local run) is copied into
    folder/earlier-<time it was written>/ before a new one replaces it; that folder, or None. The
    same options' model (a resumed or repeated run) is simply replaced."""
    if not ((folder / WEIGHTS).is_file() and (folder / DESCRIPTION).is_file()):
        return None
    try:
        earlier = json.loads((folder / DESCRIPTION).read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier == json.loads(json.dumps(options, default=str)):
        return None
    written = datetime.fromtimestamp((folder / DESCRIPTION).stat().st_mtime)
    kept = folder / f"earlier-{written:%Y%m%d%H%M%S}"
    kept.mkdir(exist_ok=True)
    for name in (WEIGHTS, DESCRIPTION):
        shutil.copy2(folder / name, kept / name)
    return kept


def find(folder):
    """The folder holding model.pt and model.json: `folder` itself, or its model/ subfolder
    (a fetched job's results); FileNotFoundError says what is missing."""
    for candidate in (Path(folder), Path(folder) / "model"):
        if (candidate / WEIGHTS).is_file() and (candidate / DESCRIPTION).is_file():
            return candidate
    raise FileNotFoundError(
        f"no {WEIGHTS} with {DESCRIPTION} in {folder} or {Path(folder) / 'model'}: "
        "train first (python src/train.py), or pass a fetched job's folder"
    )


def find_all(folder):
    """The model folders of `folder`: itself (or its model/ subfolder), or, for train.py --folds,
    each fold-<i>/ in it, in fold order; FileNotFoundError as find() when there is none."""
    for base in (Path(folder), Path(folder) / "model"):
        folds = sorted(base.glob("fold-*/" + WEIGHTS), key=lambda path: int(path.parent.name[5:]))
        if folds:
            return [path.parent for path in folds]
    return [find(folder)]


def load(folder, device="cpu"):
    """(the model in eval mode on `device`, the description saved with it)."""
    folder = find(folder)
    about = json.loads((folder / DESCRIPTION).read_text())
    # The weights are model.pt's: none to download for a pretrained network.
    info = (
        {**about["data"], "pretrained": False} if "pretrained" in about["data"] else about["data"]
    )
    model = model_code.build(info, argparse.Namespace(**about["options"]))
    weights = torch.load(folder / WEIGHTS, map_location=device, weights_only=True)
    model.load_state_dict(weights)
    return model.to(device).eval(), about
