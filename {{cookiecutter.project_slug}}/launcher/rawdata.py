"""Your own data into dataset/: unpack an archive you put in rawdata/ (e.g. what a Kaggle
competition gives you), or download a competition's archive there first with the kaggle package.
scripts/prepare_dataset.py offers both as `rawdata` and `kaggle`; src/data.py says whether the
result is a dataset it reads before anything in dataset/ changes.
"""

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from launcher import project


def the_archive():
    """The one archive in rawdata/ (exit with one line when there are none or several)."""
    formats = [ext for _, exts, _ in shutil.get_unpack_formats() for ext in exts]
    found = sorted(p for p in project.RAWDATA_DIR.glob("*") if p.name.endswith(tuple(formats)))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        sys.exit(f"error: expected one archive in {project.RAWDATA_DIR} (found: {names}); name one")
    return found[0]


def unpack(archive, out):
    """Unpack `archive` into `out`, once src/data.py finds a dataset in it; an archive of one
    folder gives that folder's content. Files already in `out` of other names stay."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        # Nothing may land outside the folder: zip unpacking skips such names itself, tar
        # unpacking refuses them with the "data" filter.
        safety = {} if zipfile.is_zipfile(archive) else {"filter": "data"}
        try:
            shutil.unpack_archive(archive, scratch, **safety)
        except (shutil.ReadError, OSError, ValueError) as error:
            sys.exit(f"error: cannot unpack {archive}: {error}")
        root = Path(scratch)
        entries = list(root.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        import data  # src/data.py, torch with it: only once there is something to check

        problems = data.problems(root)
        if problems:
            sys.exit(f"error: {archive} does not hold the expected layout: {'; '.join(problems)}")
        out.mkdir(exist_ok=True)
        for entry in root.iterdir():
            target = out / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(entry, target)
    print(f"unpacked {archive} into {out}")


def download_competition(competition):
    """rawdata/<competition>.zip, with the kaggle package and your ~/.kaggle/kaggle.json."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        sys.exit("error: the kaggle package is not installed: pip install kaggle")
    api = KaggleApi()
    try:
        api.authenticate()
        api.competition_download_files(competition, path=project.RAWDATA_DIR, quiet=False)
    except Exception as error:  # the client raises its own types for auth, 403 and 404
        reason = " ".join(str(error).split())[:300]
        sys.exit(
            f"error: could not download {competition!r} ({reason}); check ~/.kaggle/kaggle.json "
            "and that you accepted the competition's rules on kaggle.com"
        )
    return project.RAWDATA_DIR / f"{competition}.zip"


def add_sources(sources, common):
    """The `rawdata` and `kaggle` subcommands of a prepare_dataset.py parser."""
    rawdata = sources.add_parser(
        "rawdata", parents=[common], help="unpack your archive from rawdata/ into dataset/"
    )
    rawdata.add_argument(
        "archive", nargs="?", type=Path, help="default: the one archive in rawdata/"
    )
    kaggle = sources.add_parser(
        "kaggle", parents=[common], help="download a competition into rawdata/, then unpack it"
    )
    kaggle.add_argument("competition", help="the name in the competition's URL")


def prepare(args):
    """Run the `rawdata` or `kaggle` subcommand."""
    if args.source == "kaggle":
        unpack(download_competition(args.competition), args.out)
    else:
        unpack(args.archive or the_archive(), args.out)
