"""The tabular example's data: scripts/prepare_dataset.py writes a synthetic set (or unpacks
yours from rawdata/) in the layout src/data.py reads, and src/data.py encodes it (medians for
missing numbers, a column per category, statistics of the training part; classes, or a
standardised number for regression) or says in one line what is missing or malformed."""

import csv
import sys
import zipfile

import pandas as pd
import prepare_dataset
import pytest
import torch

import data
import metrics

REGRESSION = metrics.PROBLEM == "regression"


def synthetic(out, *options):
    prepare_dataset.main(["synthetic", "--out", str(out), *map(str, options)])
    return out


def rows_of(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_synthetic_set_has_the_layout_data_py_reads_and_the_same_seed_gives_the_same_rows(
    tmp_path,
):
    first = synthetic(tmp_path / "a", "--train-size", 100, "--test-size", 30, "--seed", 7)
    again = synthetic(tmp_path / "b", "--train-size", 100, "--test-size", 30, "--seed", 7)
    other = synthetic(tmp_path / "c", "--train-size", 100, "--test-size", 30, "--seed", 8)
    train, test = rows_of(first / "train.csv"), rows_of(first / "test.csv")
    assert (len(train), len(test)) == (100, 30)
    assert {data.ID, data.TARGET} <= set(train[0]) and data.TARGET not in test[0]
    if REGRESSION:  # prices around 200, in other units than the features'
        assert 100 < sum(float(row[data.TARGET]) for row in train) / len(train) < 300
    else:
        assert {row[data.TARGET] for row in train} == {"0", "1"}
    assert not {row[data.ID] for row in train} & {row[data.ID] for row in test}
    assert (first / "train.csv").read_text() == (again / "train.csv").read_text()
    assert (first / "train.csv").read_text() != (other / "train.csv").read_text()
    assert data.problems(first) == []


def test_load_encodes_numbers_categories_and_gaps_with_training_statistics(synthetic_dataset):
    dataset = data.load(synthetic_dataset, 0.1, seed=0)
    info = dataset.info
    assert info["columns"] == [*prepare_dataset.FEATURES, "colour=blue", "colour=green",
                               "colour=red"]  # fmt: skip
    assert info["input_shape"] == [len(info["columns"])]
    assert (len(dataset.train), len(dataset.val)) == (1800, 200)
    assert torch.allclose(dataset.train.inputs.mean(0), torch.zeros(11), atol=1e-4)
    assert torch.isfinite(dataset.train.inputs).all()  # the gaps in f1 became the median
    assert dataset.test.targets is None
    assert dataset.test.ids == [row[data.ID] for row in rows_of(synthetic_dataset / "test.csv")]


def test_targets_are_class_indices_or_the_standardised_number(synthetic_dataset):
    dataset = data.load(synthetic_dataset, 0.1, seed=0)
    rows = {row[data.ID]: row for row in rows_of(synthetic_dataset / "train.csv")}
    given = [rows[id][data.TARGET] for id in dataset.val.ids]
    if REGRESSION:
        mean, std = dataset.info["target_scale"]
        assert "classes" not in dataset.info and dataset.info["target"] == data.TARGET
        assert dataset.train.targets.mean().abs() < 1e-4  # standardised on the training part
        assert dataset.val.targets.tolist() == pytest.approx(
            [(float(value) - mean) / std for value in given], abs=1e-5
        )
    else:
        assert dataset.info["classes"] == ["0", "1"]
        assert [dataset.info["classes"][i] for i in dataset.val.targets.tolist()] == given


def test_a_target_the_model_cannot_take_is_reported_in_one_line(tmp_path):
    (tmp_path / "train.csv").write_text("id,f1,target\n1,0.5,3\n2,0.7,12.5\n3,0.1,3\n")
    info = data.load(tmp_path, 0.34, seed=0).info  # the saved model's, say
    (tmp_path / "train.csv").write_text("id,f1,target\n1,0.5,cheap\n2,0.7,12.5\n3,0.1,3\n")

    with pytest.raises(data.DatasetError) as error:
        data.load(tmp_path, 0.34, seed=0, info=info)

    message = str(error.value)
    expected = "not a number in 1 row(s) (ids 1)" if REGRESSION else "does not know: cheap"
    assert "\n" not in message and expected in message


def test_a_value_not_seen_in_training_encodes_as_no_category_at_prediction(
    synthetic_dataset, tmp_path
):
    info = data.load(synthetic_dataset, 0.1, seed=0).info
    row = {**rows_of(synthetic_dataset / "test.csv")[0], "colour": "purple"}
    raw = data.encode(pd.DataFrame([row]), info, standardise=False)
    assert raw[0, len(prepare_dataset.FEATURES) :].tolist() == [0.0, 0.0, 0.0]


def test_a_text_column_of_many_values_becomes_ranks_of_its_frequency_not_dropped(tmp_path):
    cities = [f"city{index % 70}" for index in range(400)] + ["city0"] * 50  # city0: most often
    rows = [f"{index},{city},{index % 3},{index % 2}" for index, city in enumerate(cities)]
    (tmp_path / "train.csv").write_text("id,city,f1,target\n" + "\n".join(rows) + "\n")
    info = data.load(tmp_path, 0.1, seed=0).info
    assert info["columns"] == ["f1", "city#rank"] and info["codes"]["city"][0] == "city0"
    frame = pd.DataFrame({"id": ["a", "b"], "city": ["city0", "nowhere"], "f1": [1, 2]})
    assert data.encode(frame, info, standardise=False)[:, 1].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "train.csv"),
        ("id,f1\n1,0.5\n2,0.7\n", "target"),
        ("id,target\n1,0\n2,1\n3,0\n4,1\n", "no feature column"),
        ("id,f1,target\n1,0.5,1\n", "at least 2"),
    ],
    ids=["no train.csv", "no target column", "no features", "one row"],
)
def test_a_malformed_dataset_is_reported_in_one_line_naming_the_problem(tmp_path, content, named):
    if content is not None:
        (tmp_path / "train.csv").write_text(content)

    with pytest.raises(data.DatasetError) as error:
        data.load(tmp_path, 0.5, seed=0)

    message = str(error.value)
    assert "\n" not in message and named in message


def test_rawdata_unpacks_a_competition_archive_into_the_dataset(synthetic_dataset, tmp_path):
    archive = tmp_path / "competition.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("train.csv", "test.csv"):
            zipped.write(synthetic_dataset / name, name)
    out = tmp_path / "dataset"

    prepare_dataset.main(["rawdata", str(archive), "--out", str(out)])

    assert (out / "train.csv").read_bytes() == (synthetic_dataset / "train.csv").read_bytes()
    assert len(data.load(out, 0.1, seed=0).test) == len(rows_of(out / "test.csv"))


def test_kaggle_without_its_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle", None)  # import kaggle raises ImportError

    with pytest.raises(SystemExit) as exit:
        prepare_dataset.main(["kaggle", "some-competition", "--out", str(tmp_path / "dataset")])

    assert exit.value.code == "error: the kaggle package is not installed: pip install kaggle"


def write_table(path, count, seed, labelled=True):
    """Rows of two numbers, a colour and a user; the target a text class (red, green, blue)
    the numbers decide, or for regression their sum."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 2, generator=generator)
    rows = ["id,x1,x2,colour,user" + (",target" if labelled else "")]
    for index in range(count):
        a, b = x[index].tolist()
        label = f"{a + b:.4f}" if REGRESSION else ["red", "green", "blue"][int(a * 3)]
        line = f"r{seed}-{index},{a:.4f},{b:.4f},c{index % 4},u{index % 37}"
        rows.append(line + (f",{label}" if labelled else ""))
    path.write_text("\n".join(rows) + "\n")


def test_five_folds_of_a_text_target_give_a_cv_score_and_a_submission_as_the_sample(
    tmp_path, train_argv
):
    import predict

    import cross_validation
    import train
    from options import build_parser

    folder = tmp_path / "data"
    folder.mkdir()
    write_table(folder / "train.csv", 600, seed=1)
    write_table(folder / "test.csv", 50, seed=2, labelled=False)
    run_dir = tmp_path / "run"
    argv = train_argv(folder, run_dir, "--epochs", "2", "--folds", "5", "--batch-size", "32")
    train.train(build_parser().parse_args(argv))

    oof = rows_of(run_dir / "output" / "oof.csv")
    assert len(oof) == 600 and {row["fold"] for row in oof} == {"1", "2", "3", "4", "5"}
    columns = ["prediction"] if REGRESSION else ["blue", "green", "red"]
    assert list(oof[0]) == ["id", "fold", "target", *columns]
    cv = (run_dir / "output" / "cv.json").read_text()
    assert f'"cv_{cross_validation.CV_METRIC}"' in cv

    test_ids = [row["id"] for row in rows_of(folder / "test.csv")]
    header = ["id", "target"] if REGRESSION else ["id", "red", "green", "blue"]
    sample = "\n".join(
        [
            ",".join(header),
            *(f"{i}," + ",".join("0" * (len(header) - 1)) for i in reversed(test_ids)),
        ]
    )
    (folder / "sample_submission.csv").write_text(sample + "\n")
    out = tmp_path / "predictions"
    assert (
        predict.main(
            ["--model", str(run_dir / "model"), "--data-dir", str(folder), "--out-dir", str(out)]
        )
        == 0
    )
    written = rows_of(out / "submission.csv")
    assert list(written[0]) == header and [row["id"] for row in written] == test_ids[::-1]
    if not REGRESSION:
        assert all(abs(sum(float(row[c]) for c in header[1:]) - 1) < 1e-4 for row in written)


def test_a_group_column_keeps_each_group_in_one_fold(tmp_path, monkeypatch):
    import splits

    write_table(tmp_path / "train.csv", 300, seed=3)
    monkeypatch.setattr(data, "GROUP", "user")
    users = {row["id"]: row["user"] for row in rows_of(tmp_path / "train.csv")}
    seen = {}
    for fold in (1, 2, 3):
        dataset = data.load(tmp_path, splits.Fold(3, fold), seed=0)
        held = {users[id_] for id_ in dataset.val.ids}
        assert not held & {users[id_] for id_ in dataset.train.ids}  # no group on both sides
        seen |= {user: fold for user in held}
        assert "user" not in " ".join(dataset.info["columns"])  # who, not what to predict
    assert len(seen) == 37
