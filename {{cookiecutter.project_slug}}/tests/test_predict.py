"""scripts/predict.py: a trained model, rebuilt from its folder alone, predicts the test set
into submission.csv; a missing model or dataset ends in one line."""

import contextlib
import csv
import io
import json
import shutil

import predict
import pytest
import torch

import data
import saved_model
import splits
import train
from options import build_parser


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory, train_argv):
    run_dir = tmp_path_factory.mktemp("trained")
    argv = train_argv(synthetic_dataset, run_dir, "--epochs", "1", "--train-size", "500")
    with contextlib.redirect_stdout(io.StringIO()):
        train.train(build_parser().parse_args(argv))
    return run_dir


def assert_numbers_in_the_target_units(values, trained, test):
    """Each predicted number is the model's output standardised back (data.py's target_scale)."""
    model, about = saved_model.load(trained / "model")
    mean, std = about["data"]["target_scale"]
    with torch.no_grad():
        outputs = torch.cat([model(inputs) for inputs, _ in splits.batches(test, 500, "cpu")])
    assert values == pytest.approx((outputs.double().squeeze(1) * std + mean).tolist(), rel=1e-5)


def run_predict(*argv, capsys):
    code = predict.main([str(word) for word in argv])
    return code, capsys.readouterr()


def test_submission_has_one_row_per_test_example_with_a_class_a_probability_or_a_number(
    trained, synthetic_dataset, tmp_path, capsys
):
    argv = ["--model", trained / "model", "--data-dir", synthetic_dataset, "--out-dir", tmp_path]
    code, printed = run_predict(*argv, capsys=capsys)

    assert code == 0, printed.err
    about = json.loads((trained / "model" / "model.json").read_text())
    options = about["options"]
    test = data.load(
        synthetic_dataset, options["val_fraction"], options["seed"], about["data"]
    ).test
    with open(tmp_path / "submission.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert [row[0] for row in rows[1:]] == test.ids
    if "classes" not in about["data"]:  # regression: the number, in the target's units
        assert rows[0] == ["id", about["data"]["target"]]
        assert_numbers_in_the_target_units([float(row[1]) for row in rows[1:]], trained, test)
    elif about["data"].get("submit_probability"):  # two classes, where data.py asks for it
        assert rows[0] == ["id", "probability"]
        assert all(0 <= float(row[1]) <= 1 for row in rows[1:])
    else:
        assert rows[0] == ["id", "label"]
        assert {row[1] for row in rows[1:]} <= set(about["data"]["classes"])
    if test.targets is not None:  # a labelled test set: the metric line training printed
        reported = json.loads((trained / "output" / "test_metrics.json").read_text())
        assert " ".join(f"{name}={value:.4f}" for name, value in reported.items()) in printed.out
    assert (tmp_path / "predictions.png").is_file() == (test[0][0].dim() == 3)  # images


def test_a_second_prediction_keeps_the_first_submission_beside_it(
    trained, synthetic_dataset, tmp_path, capsys
):
    argv = ["--model", trained / "model", "--data-dir", synthetic_dataset, "--out-dir", tmp_path]
    assert run_predict(*argv, capsys=capsys)[0] == 0
    first = (tmp_path / "submission.csv").read_bytes()

    code, printed = run_predict(*argv, capsys=capsys)

    assert code == 0, printed.err
    (kept,) = tmp_path.glob("submission-*.csv")
    assert kept.read_bytes() == first and f"kept the earlier one as {kept.name}" in printed.out


def test_a_fetched_job_folder_is_found_through_its_model_subfolder(
    trained, synthetic_dataset, tmp_path, capsys
):
    job = tmp_path / "20260101000000"
    shutil.copytree(trained / "model", job / "model")

    argv = ["--model", job, "--data-dir", synthetic_dataset, "--out-dir", tmp_path / "out"]
    code, printed = run_predict(*argv, capsys=capsys)

    assert code == 0, printed.err
    assert (tmp_path / "out" / "submission.csv").is_file()


@pytest.mark.parametrize("missing", ["model", "dataset"])
def test_a_missing_model_or_dataset_ends_in_one_line_and_writes_nothing(
    missing, trained, synthetic_dataset, tmp_path
):
    model = tmp_path / "none" if missing == "model" else trained / "model"
    dataset = tmp_path / "none" if missing == "dataset" else synthetic_dataset

    argv = ["--model", model, "--data-dir", dataset, "--out-dir", tmp_path / "out"]
    with pytest.raises(SystemExit) as exit:
        predict.main([str(word) for word in argv])

    message = exit.value.code
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith("predict.py: error:")
    assert str(tmp_path / "none") in message
    assert not (tmp_path / "out").exists()


# With the competition's sample_submission.csv: its columns, its ids in its order, or one line.


@pytest.fixture
def with_sample(synthetic_dataset, tmp_path):
    """with_sample(header, ids): a copy of the dataset whose sample_submission.csv has them."""

    def make(header, ids):
        folder = tmp_path / "data"
        if not folder.exists():
            shutil.copytree(synthetic_dataset, folder)
        rows = [header, *([id_, *["0"] * (len(header) - 1)] for id_ in ids)]
        with open(folder / "sample_submission.csv", "w", newline="") as file:
            csv.writer(file).writerows(rows)
        return folder

    return make


def default_submission(trained, data_dir, out_dir, capsys):
    code, printed = run_predict(
        "--model", trained / "model", "--data-dir", data_dir, "--out-dir", out_dir, capsys=capsys
    )
    assert code == 0, printed.err
    with open(out_dir / "submission.csv", newline="") as file:
        return list(csv.reader(file))


def test_the_submission_takes_the_samples_columns_and_its_ids_in_its_order(
    trained, synthetic_dataset, with_sample, tmp_path, capsys
):
    plain = default_submission(trained, synthetic_dataset, tmp_path / "plain", capsys)
    predicted = {row[0]: row[1] for row in plain[1:]}
    ids = list(reversed(predicted))  # another order, as competitions' samples have
    folder = with_sample(["ImageId", "Prediction"], [f"{id_}.png" for id_ in ids])

    rows = default_submission(trained, folder, tmp_path / "out", capsys)

    assert rows[0] == ["ImageId", "Prediction"]
    assert [row[0] for row in rows[1:]] == [f"{id_}.png" for id_ in ids]  # as the sample wrote
    assert [row[1] for row in rows[1:]] == [predicted[id_] for id_ in ids]


def test_a_sample_with_a_column_per_class_gets_each_class_probability(
    trained, synthetic_dataset, with_sample, tmp_path, capsys
):
    about = json.loads((trained / "model" / "model.json").read_text())
    classes = about["data"].get("classes")
    if not classes:
        pytest.skip("a number to predict has no classes")
    plain = default_submission(trained, synthetic_dataset, tmp_path / "plain", capsys)
    ids = [row[0] for row in plain[1:]]
    header = ["id", *reversed(classes)]
    folder = with_sample(header, ids)

    rows = default_submission(trained, folder, tmp_path / "out", capsys)

    assert rows[0] == header and [row[0] for row in rows[1:]] == ids
    probabilities = torch.tensor([[float(value) for value in row[1:]] for row in rows[1:]])
    assert probabilities.sum(dim=1) == pytest.approx(torch.ones(len(ids)), abs=1e-4)
    best = [header[1 + k] for k in probabilities.argmax(dim=1).tolist()]
    if not about["data"].get("submit_probability"):
        assert best == [row[1] for row in plain[1:]]  # the most probable class is the label


@pytest.mark.parametrize("fault", ["an id too many", "an id too few"])
def test_a_sample_that_does_not_fit_stops_in_one_line_writing_nothing(
    trained, synthetic_dataset, with_sample, tmp_path, capsys, fault
):
    plain = default_submission(trained, synthetic_dataset, tmp_path / "plain", capsys)
    ids = [row[0] for row in plain[1:]]
    ids = [*ids, "not-in-the-test-set"] if fault == "an id too many" else ids[1:]
    folder = with_sample(["id", "target"], ids)

    with pytest.raises(SystemExit) as stopped:
        run_predict(
            "--model",
            trained / "model",
            "--data-dir",
            folder,
            "--out-dir",
            tmp_path / "out",
            capsys=capsys,
        )

    message = str(stopped.value.code)
    assert message.startswith("predict.py: error: ") and "\n" not in message
    expected = "have no prediction" if fault == "an id too many" else "are not in sample_submission"
    assert expected in message
    assert not (tmp_path / "out" / "submission.csv").exists()


def test_tta_averages_each_image_with_its_mirror_and_refuses_other_inputs(
    trained, synthetic_dataset, tmp_path, capsys
):
    from launcher import submission

    argv = ["--model", trained / "model", "--data-dir", synthetic_dataset, "--tta"]
    model, about = saved_model.load(trained / "model")
    options = about["options"]
    test = data.load(
        synthetic_dataset, options["val_fraction"], options["seed"], about["data"]
    ).test
    if test[0][0].dim() != 3:  # not images: one line, nothing written
        with pytest.raises(SystemExit) as stopped:
            run_predict(*argv, "--out-dir", tmp_path, capsys=capsys)
        assert str(stopped.value.code).endswith(
            "--tta flips images, and this model's inputs are not images"
        )
        assert not (tmp_path / "submission.csv").exists()
        return
    code, printed = run_predict(*argv, "--out-dir", tmp_path, capsys=capsys)
    assert code == 0, printed.err
    plain, mirrored = submission.predict(model, test), submission.predict(model, Mirrored(test))
    mean = (plain.softmax(dim=1) + mirrored.softmax(dim=1)) / 2
    assert torch.allclose(submission.predict(model, test, tta=True).exp(), mean, atol=1e-6)


class Mirrored(torch.utils.data.Dataset):
    """A split's images mirrored left to right."""

    def __init__(self, split):
        self.split, self.targets, self.ids = split, split.targets, split.ids

    def __len__(self):
        return len(self.split)

    def __getitem__(self, index):
        image, target = self.split[index]
        return image.flip(-1), target
