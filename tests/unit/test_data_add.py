"""`textclf data add` in a real git + DVC project, without training: the split it carves, what it writes
(data under DVC, params.yaml with its comments), what it clears, and a clear refusal for every mistake,
after which nothing in the project has changed."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from tests.helpers import bin_path, write_csv
from textclf.cli import app
from training.carve import carve_test, held_out
from training.params import ParamsError
from training.params_edit import update_params

PHRASES = {
    "positive": [
        "loved the crème brûlée scene",
        "a délicieux film",
        "отличный фильм",
        "素晴らしい映画",
        "great acting",
    ],
    "negative": [
        "nothing but clichés",
        "a boring plot",
        "ужасный конец",
        "ひどい映画です",
        "\u039a\u0391\u039a\u039f \u03c4\u03ad\u03bb\u03bf\u03c2",
    ],  # Greek, upper and lower case
}
PREVIOUS_RESULTS = [
    "reports/data.json",
    "reports/train_logreg.json",
    "reports/eval/metrics_logreg.json",
    "reports/comparison.json",
    "reports/champion.json",
    "reports/confusion_logreg.png",
    "reports/confusion_onnx_logreg_fp32.png",  # written beside the declared plots
    "artifacts/data/train.jsonl",
    "artifacts/onnx/logreg/fp32/model.onnx",
]


def review_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n distinct short reviews, two labels, in accented Latin, Cyrillic, Japanese and Greek."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 3 else "negative"  # 2:1, so the majority class is not half
        rows.append((f"{rng.choice(PHRASES[label])} {rng.choice(['!', '.', ', vraiment', ''])} #{i}", label))
    return rows


def write_reviews(path: Path, n: int, seed: int = 0) -> Path:
    """A JSONL file of reviews: `body`, `sentiment`, and columns the pipeline does not use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i, (text, label) in enumerate(review_rows(n, seed)):
            handle.write(json.dumps({"id": i, "body": text, "sentiment": label, "lang": "mixed"}) + "\n")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["data", "add", *args])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC project with the shipped pipeline files, dvc.lock, and a previous dataset's results."""
    monkeypatch.chdir(tmp_path)
    for name in ("params.yaml", "dvc.yaml", "dvc.lock"):
        shutil.copy2(REPO / name, tmp_path / name)
    (tmp_path / "data/feedback").mkdir(parents=True)
    for argv in (["git", "init", "-q"], [bin_path("dvc"), "init", "-q"]):
        subprocess.run(argv, cwd=tmp_path, check=True)
    for result in [*PREVIOUS_RESULTS, "reports/bench.json"]:
        (tmp_path / result).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / result).write_text("{}")
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the project outside .git and .dvc, by path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not {".git", ".dvc"} & set(p.relative_to(root).parts)
    }


def test_a_jsonl_dataset_is_carved_versioned_and_named_in_params_with_the_comments_kept(
    project: Path,
) -> None:
    source = write_reviews(project / "incoming" / "Movie Reviews.jsonl", 150)
    code, out = run(str(source), "--text-column", "body", "--label-column", "sentiment")
    assert code == 0, out
    assert "added movie-reviews: data/raw/movie-reviews (120 train / 30 test rows, 2 labels" in out
    folder = project / "data/raw/movie-reviews"
    train, test = (
        [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        for split in ("train", "test")
    )
    assert Counter(r["sentiment"] for r in test) == {"positive": 20, "negative": 10}  # 20% of each label
    assert set(train[0]) == {"id", "body", "sentiment", "lang"}  # every column kept
    assert not {r["body"] for r in train} & {r["body"] for r in test}
    assert (project / "data/raw/movie-reviews.dvc").is_file()

    shipped, now = (REPO / "params.yaml").read_text(), (project / "params.yaml").read_text()
    changed = {
        a.split(":")[0].strip() for a, b in zip(shipped.splitlines(), now.splitlines(), strict=True) if a != b
    }
    assert changed == {
        "name", "dir", "train_file", "test_file", "text_column", "label_column", "labels_file",
        "min_accuracy", "min_macro_f1", "min_gain_over_majority", "model_name", "experiment",
    }  # fmt: skip
    comment = r"^  dir: data/raw/movie-reviews +# versioned with DVC \(data/raw/movie-reviews\.dvc\)$"
    assert re.search(comment, now, re.MULTILINE)  # the comment kept, naming the new .dvc file
    params = yaml.safe_load(now)
    assert params["registry"] == {"model_name": "movie-reviews-classifier", "experiment": "movie-reviews"}
    assert "data.labels_file: categories.json was the previous dataset's; now null" in out

    # The previous dataset's results are gone, its dvc.lock entries with them; other reports stay.
    assert not [r for r in PREVIOUS_RESULTS if (project / r).exists()]
    assert not (project / "dvc.lock").exists()
    assert (project / "reports/bench.json").exists()
    assert "kept reports/bench.json: not pipeline outputs" in out
    assert "removed 9 result(s) of the previous dataset" in out


def test_own_splits_are_copied_as_they_are_and_keep_gate_keeps_the_floors(project: Path) -> None:
    rows = [[text, label, "web"] for text, label in review_rows(60)]
    train = write_csv(project / "in" / "train.csv", rows[:40], ["review", "stars", "source"])
    test = write_csv(project / "in" / "test.csv", rows[40:], ["review", "stars", "source"])
    labels = project / "in" / "labels.json"
    labels.write_text(json.dumps(["negative", "positive"]))
    args = ["--text-column", "review", "--label-column", "stars", "--test", str(test)]
    code, out = run(str(train), *args, "--labels-file", str(labels), "--keep-gate")
    assert code == 0, out
    assert "added in: data/raw/in (40 train / 20 test rows, 2 labels; your test)" in out  # the folder's name
    assert (project / "data/raw/in/test.csv").read_bytes() == test.read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["data"]["labels_file"] == "labels.json" and params["gate"]["min_accuracy"] == 0.88

    code, out = run(str(train), *args, "--name", "in")
    assert (code, "a dataset named 'in' exists (data/raw/in); pass --force" in out) == (1, True), out
    code, out = run(str(train), *args, "--name", "in", "--force")
    assert code == 0, out
    assert yaml.safe_load((project / "params.yaml").read_text())["gate"]["min_accuracy"] is None


def test_feedback_labelled_for_the_previous_dataset_stays_with_it(project: Path) -> None:
    (project / "data/feedback/feedback.jsonl").write_text('{"text": "where is my card", "label": "card"}\n')
    source = write_reviews(project / "reviews.jsonl", 30)
    code, out = run(str(source), "--text-column", "body", "--label-column", "sentiment")
    assert code == 0, out
    assert "data.feedback_dir: data/feedback holds feedback labelled for the previous dataset" in out
    assert (
        yaml.safe_load((project / "params.yaml").read_text())["data"]["feedback_dir"]
        == "data/feedback/reviews"
    )
    assert (project / "data/feedback/reviews/README.md").is_file()


BAD_CSV = "review,stars\nfine film,positive\nbad film,negative\ngood film,positive\nmeh film,negative\n"


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["nope.csv"], "data file nope.csv: file not found"),
        ({"r.txt": "a,b\n"}, ["r.txt"], "r.txt: unsupported format '.txt'; use one of .csv, .jsonl, .ndjson"),
        (
            {"r.csv": BAD_CSV},
            ["r.csv", "--text-column", "text"],
            "r.csv has no column 'text' (--text-column); columns found: review, stars",
        ),
        (
            {
                "r.csv": BAD_CSV + "i liked it, i guess\n"
            },  # an unquoted comma: text "i liked it", label " i guess"
            ["r.csv"],
            "r.csv: 1 label(s) with fewer than 2 training examples: ' i guess' (1 at line 6); a text with an "
            'unquoted comma is read as text + label: quote such texts ("a, b")',
        ),
        (
            {"r.csv": BAD_CSV, "t.csv": "review,stars\nok film,positive\n  ,negative\n"},
            ["r.csv", "--test", "t.csv"],
            "1 empty or blank text(s) in t.csv (line 3)",
        ),
        (
            {"r.csv": BAD_CSV, "t.csv": "review,stars\nok film,positive\n"},
            ["r.csv", "--test", "t.csv", "--labels-file", "l.json"],
            "--labels-file l.json: file not found",
        ),
        ({"r.csv": BAD_CSV}, ["r.csv", "--name", "My Data"], "--name 'My Data' is not a safe name"),
        ({"r.csv": BAD_CSV}, ["r.csv", "--test-fraction", "1.5"], "--test-fraction must be between 0 and 1"),
    ],
    ids=["missing", "format", "column", "one-example", "blank-test-text", "labels-file", "name", "fraction"],
)
def test_mistakes_are_refused_clearly_and_change_nothing(
    project: Path, files: dict[str, str], args: list[str], message: str
) -> None:
    for name, text in files.items():
        (project / name).write_text(text, encoding="utf-8")
    before = snapshot(project)
    for option, column in (("--text-column", "review"), ("--label-column", "stars")):
        if option not in args:
            args = [*args, option, column]
    code, out = run(*args)
    assert (code, message in out) == (1, True), out
    assert snapshot(project) == before


def test_outside_a_dvc_repository_it_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    source = write_reviews(tmp_path / "reviews.jsonl", 20)
    code, out = run(str(source), "--text-column", "body", "--label-column", "sentiment")
    assert (code, "is not a DVC repository" in out) == (1, True), out
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("distinct", "fraction", "min_train", "expected"),
    [(100, 0.2, 2, 20), (5, 0.2, 2, 1), (3, 0.1, 2, 1), (2, 0.2, 2, 0), (1, 0.5, 1, 0), (10, 0.9, 2, 8)],
)
def test_held_out_share_keeps_enough_to_train_on(
    distinct: int, fraction: float, min_train: int, expected: int
) -> None:
    assert held_out(distinct, fraction, min_train) == expected


def test_the_carve_is_seeded_stratified_and_keeps_a_repeated_text_on_one_side(tmp_path: Path) -> None:
    rows = [[f"café crème {i}", "a" if i % 4 else "b"] for i in range(80)]
    rows += [["the same, text", "a"]] * 5  # a comma inside a quoted field, repeated
    source = write_csv(tmp_path / "src.csv", rows, ["t", "l"])
    outputs = []
    for attempt in range(2):
        train, test = tmp_path / f"train{attempt}.csv", tmp_path / f"test{attempt}.csv"
        result = carve_test(source, train, test, "t", "l", fraction=0.25, seed=7, min_train=2)
        assert result.train_rows + result.test_rows == 85
        outputs.append((train.read_bytes(), test.read_bytes()))
    assert outputs[0] == outputs[1]
    with (tmp_path / "test0.csv").open(encoding="utf-8", newline="") as handle:
        test_rows = list(csv.reader(handle))
    assert test_rows[0] == ["t", "l"]
    assert Counter(label for _, label in {tuple(row) for row in test_rows[1:]}) == {"a": 15, "b": 5}
    repeated = sum(row[0] == "the same, text" for row in test_rows)
    assert repeated in (0, 5)


def test_params_edit_keeps_the_file_byte_for_byte_and_refuses_an_invalid_result(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy2(REPO / "params.yaml", path)
    update_params(path, {"data": {"name": "banking77"}})
    assert path.read_bytes() == (REPO / "params.yaml").read_bytes()
    with pytest.raises(ParamsError, match=r"gate\.min_accuracy"):
        update_params(path, {"gate": {"min_accuracy": 3}})
    assert path.read_bytes() == (REPO / "params.yaml").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
