"""`textclf data add`: a user's labelled file becomes the pipeline's dataset, in one step.

The data is checked first and staged beside its destination (data/raw/.<name>.adding); only when it
passes the same validation as `textclf validate` does anything in the project change: the folder takes its
place under data/raw/<name>, DVC versions it (`dvc add`), params.yaml names it (`data:`, `registry:` and,
unless asked not to, the gate) with its comments kept, and the previous dataset's pipeline results leave
the workspace (training.pipeline_reset), so nothing of it shows beside the new dataset's results.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvc.exceptions import DvcException, NotDvcRepoError

from textclf.core.records import RecordFormatError, csv_columns, iter_jsonl, record_format
from training.carve import carve_test
from training.params import DataParams, Params, ParamsError, load_params
from training.params_edit import update_params
from training.pipeline_reset import apply_reset, plan_reset
from training.validate import DataReport, DataValidationError, check_file, prepare

RAW = Path("data/raw")  # where datasets live, relative to the project root
FEEDBACK = Path("data/feedback")
LABELS_FILE = "labels.json"
# Gate for a new dataset: banking77's absolute floors (0.88) say nothing about other data; a floor above
# always answering the biggest class does.
NEW_GATE = {"min_accuracy": None, "min_macro_f1": None, "min_gain_over_majority": 0.1}
REPORTS = Path("reports")
# Images the stages write beside their declared plots (per-variant confusion matrices, learning curves);
# .gitignore marks them as pipeline outputs.
STAGE_IMAGES = "*.png"
_SPLIT_NAMES = {"train", "training", "test", "dev", "valid", "validation", "data", "dataset", "all"}
_SAFE_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


class DatasetAddError(ValueError):
    """The dataset cannot be added; the message says why and what to do."""


@dataclass(frozen=True)
class AddRequest:
    source: Path
    text_column: str
    label_column: str
    name: str | None = None
    test: Path | None = None
    validation: Path | None = None
    labels_file: Path | None = None
    test_fraction: float = 0.2
    seed: int = 42
    params_file: Path = Path("params.yaml")
    force: bool = False
    keep_gate: bool = False


@dataclass
class AddResult:
    name: str
    directory: Path  # relative to the project root, as params.yaml names it
    files: dict[str, str | None]  # params.yaml data: train_file, test_file, validation_file, labels_file
    carved: bool
    report: DataReport
    params: Params
    removed: list[Path]
    notes: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    """A safe dataset name: lower-case ASCII letters and digits, words joined by '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def default_name(source: Path) -> str:
    """The file's name (`reviews.jsonl` → reviews), or its folder's when the file is only a split's
    (`imdb/train.csv` → imdb)."""
    stem = slug(source.stem)
    if stem in _SPLIT_NAMES or not stem:
        stem = slug(source.resolve().parent.name) or stem
    return stem


def _columns(path: Path) -> list[str]:
    """A file's column names: a CSV header, or the keys of a JSONL file's first object."""
    if record_format(path) == "csv":
        return csv_columns(path)
    for record in iter_jsonl(path):
        return list(record.values)
    return []


def _check_source(path: Path, what: str, text_column: str, label_column: str) -> None:
    if not path.is_file():
        raise DatasetAddError(f"{what} {path}: file not found")
    try:
        found = _columns(path)
    except RecordFormatError as exc:
        raise DatasetAddError(str(exc)) from None
    if not found:
        raise DatasetAddError(f"{path}: no rows")
    for option, column in (("--text-column", text_column), ("--label-column", label_column)):
        if column not in found:
            raise DatasetAddError(
                f"{path} has no column {column!r} ({option}); columns found: {', '.join(found)}"
            )


def _check_inputs(request: AddRequest) -> None:
    inputs = (("data file", request.source), ("--test", request.test), ("--validation", request.validation))
    for what, path in inputs:
        if path is not None:
            _check_source(path, what, request.text_column, request.label_column)
    if request.labels_file is not None and not request.labels_file.is_file():
        raise DatasetAddError(f"--labels-file {request.labels_file}: file not found")


def _project_root(params_file: Path) -> Path:
    from dvc.repo import Repo

    root = params_file.resolve().parent
    try:
        Repo.find_root(str(root))
    except NotDvcRepoError:
        raise DatasetAddError(
            f"{root} is not a DVC repository: `textclf data add` versions the data with DVC "
            "(run `git init && dvc init` there first)"
        ) from None
    return root


def _name(request: AddRequest) -> str:
    if request.name is None:
        name = default_name(request.source)
        if not name:
            raise DatasetAddError(f"no name can be made from {request.source}: pass --name")
        return name
    if not _SAFE_NAME.fullmatch(request.name):
        suggestion = slug(request.name)
        hint = f" (e.g. --name {suggestion})" if suggestion else ""
        raise DatasetAddError(
            f"--name {request.name!r} is not a safe name: lower-case letters and digits, words joined "
            f"by - or _{hint}"
        )
    return request.name


def _stage(request: AddRequest, staging: Path, data: DataParams) -> tuple[dict[str, str | None], bool]:
    """Write the dataset's files into `staging`; returns the params `data:` file names and whether the
    test split was carved. The source files are copied byte for byte; a carved split keeps the format."""
    staging.mkdir(parents=True)
    files: dict[str, str | None] = {"train_file": f"train{request.source.suffix.lower()}"}
    carved = request.test is None
    if carved:
        files["test_file"] = f"test{request.source.suffix.lower()}"
        min_train = max(1, data.min_examples_per_label)
        carve_test(
            request.source,
            staging / files["train_file"],
            staging / files["test_file"],
            request.text_column,
            request.label_column,
            request.test_fraction,
            request.seed,
            min_train,
        )
    else:
        assert request.test is not None
        files["test_file"] = f"test{request.test.suffix.lower()}"
        shutil.copyfile(request.source, staging / files["train_file"])
        shutil.copyfile(request.test, staging / files["test_file"])
    files["validation_file"] = None
    if request.validation is not None:
        files["validation_file"] = f"validation{request.validation.suffix.lower()}"
        shutil.copyfile(request.validation, staging / files["validation_file"])
    files["labels_file"] = None
    if request.labels_file is not None:
        files["labels_file"] = LABELS_FILE
        shutil.copyfile(request.labels_file, staging / LABELS_FILE)
    return files, carved


def _validate(
    request: AddRequest, staging: Path, data: DataParams, files: dict[str, str | None], carved: bool
) -> DataReport:
    """`textclf validate` on the staged files. Its messages name the user's own files where they were
    copied byte for byte (so the lines are the user's), else the file the split will be."""
    sources = {
        "train_file": None if carved else request.source,
        "test_file": request.test,
        "validation_file": request.validation,
        "labels_file": request.labels_file,
    }
    shown = {
        str(staging / file): str(sources[key] or f"{data.dir / file} (carved from {request.source})")
        for key, file in files.items()
        if file
    }
    with tempfile.TemporaryDirectory(prefix="textclf-data-add-") as tmp:
        staged = data.model_copy(update={"dir": staging, "prepared_dir": Path(tmp) / "prepared"})
        try:
            return prepare(staged, Path(tmp) / "data.json")
        except DataValidationError as exc:
            message = str(exc)
            for path, show in shown.items():
                message = message.replace(path, show)
            raise DatasetAddError(message) from None


def _feedback_dir(root: Path, data: DataParams, name: str) -> Path | None:
    """A folder of its own for this dataset's labelled feedback when the current one holds feedback
    (labelled with the previous dataset's labels); None: the current folder serves."""
    from training import feedback

    try:
        holds_feedback = feedback.data_file(root / data.feedback_dir) is not None
    except ValueError:  # both a sealed and a plain file: feedback all the same
        holds_feedback = True
    return FEEDBACK / name if holds_feedback and data.feedback_dir != FEEDBACK / name else None


def _make_feedback_dir(root: Path, folder: Path, name: str) -> None:
    """The validate stage depends on the feedback folder, so it must exist (and git keep it)."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    readme = root / folder / "README.md"
    if not readme.exists():
        readme.write_text(
            f"# Feedback: {name}\n\nLabelled feedback on the `{name}` dataset; `textclf retrain` adds it "
            "and DVC versions it.\n",
            encoding="utf-8",
        )


def _stale_mentions(params: Params, old_name: str) -> list[str]:
    """Settings outside `data:`/`registry:` that still name the previous dataset."""
    if not old_name:
        return []
    found = []
    for section, values in params.model_dump(mode="json").items():
        if section in ("data", "registry") or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, str) and old_name in value:
                found.append(f"{section}.{key}: {value!r} names the previous dataset {old_name!r}; check it")
    return found


def _notes(request: AddRequest, old: Params, files: dict[str, str | None], name: str) -> list[str]:
    notes = []
    if old.data.labels_file and files["labels_file"] is None:
        notes.append(
            f"data.labels_file: {old.data.labels_file} was the previous dataset's; now null (the labels "
            "are the train split's)"
        )
    if old.data.validation_file and files["validation_file"] is None:
        notes.append(f"data.validation_file: {old.data.validation_file} was the previous dataset's; now null")
    if request.keep_gate:
        notes.append(
            f"gate kept (--keep-gate): min_accuracy {old.gate.min_accuracy}, min_macro_f1 "
            f"{old.gate.min_macro_f1}, min_gain_over_majority {old.gate.min_gain_over_majority}"
        )
    else:
        notes.append(
            "gate: min_accuracy and min_macro_f1 set to null (they were "
            f"{old.gate.min_accuracy} and {old.gate.min_macro_f1}, chosen for the previous dataset); "
            f"min_gain_over_majority {NEW_GATE['min_gain_over_majority']}: a model must beat always "
            "answering the biggest class by 10 points (--keep-gate keeps the floors)"
        )
    notes.append(
        f"MLflow: this dataset's models register as {name}-classifier (experiment {name}); "
        f"{old.registry.model_name} keeps its versions and champion"
    )
    notes.extend(_stale_mentions(old, old.data.name))
    return notes


def _staged(
    request: AddRequest, staging: Path, data: DataParams
) -> tuple[dict[str, str | None], bool, DataReport]:
    """The dataset's files written into `staging` and validated there; nothing is left on a failure."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        files, carved = _stage(request, staging, data)
        return files, carved, _validate(request, staging, data.model_copy(update=files), files, carved)
    except DatasetAddError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (OSError, RecordFormatError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetAddError(str(exc)) from None


def add_dataset(request: AddRequest) -> AddResult:
    """Add the dataset, or raise DatasetAddError having changed nothing (see the module docstring)."""
    if not 0 < request.test_fraction < 1:
        raise DatasetAddError(f"--test-fraction must be between 0 and 1, not {request.test_fraction}")
    try:
        old = load_params(request.params_file)
    except ParamsError as exc:
        raise DatasetAddError(str(exc)) from None
    root = _project_root(request.params_file)
    _check_inputs(request)
    name = _name(request)
    directory = RAW / name
    target, pointer = root / directory, root / RAW / f"{name}.dvc"
    if (target.exists() or pointer.exists()) and not request.force:
        raise DatasetAddError(
            f"a dataset named {name!r} exists ({directory}); pass --force to replace it, or --name another"
        )
    feedback_dir = _feedback_dir(root, old.data, name)
    data = old.data.model_copy(
        update={
            "name": name,
            "dir": directory,
            "text_column": request.text_column,
            "label_column": request.label_column,
            "feedback_dir": feedback_dir or old.data.feedback_dir,
        }
    )
    if request.test is None:
        try:
            check_file(request.source, data)  # with the file's own lines, before the split renumbers them
        except DataValidationError as exc:
            raise DatasetAddError(str(exc)) from None
    try:
        plan = plan_reset(root, root / old.data.dir)  # what the previous data produced, as params say now
    except DvcException as exc:
        raise DatasetAddError(f"cannot read the DVC pipeline: {exc}") from None

    staging = root / RAW / f".{name}.adding"
    files, carved, report = _staged(
        request, staging, data.model_copy(update={"feedback_dir": root / data.feedback_dir})
    )
    data = data.model_copy(update=files)

    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
    try:
        _dvc_add(root, target)
    except DatasetAddError:
        shutil.rmtree(target)  # a version it replaced is still in DVC's cache: `dvc checkout` restores it
        raise
    if feedback_dir is not None:
        _make_feedback_dir(root, feedback_dir, name)
    changes: dict[str, dict[str, Any]] = {
        "data": {
            "name": name,
            "dir": str(directory),
            **files,
            "text_column": request.text_column,
            "label_column": request.label_column,
            "feedback_dir": str(data.feedback_dir),
        },
        "registry": {"model_name": f"{name}-classifier", "experiment": name},
    }
    if not request.keep_gate:
        changes["gate"] = NEW_GATE
    params = update_params(request.params_file, changes)
    removed = apply_reset(root, plan, sorted((root / REPORTS).glob(STAGE_IMAGES)))
    notes = _notes(request, old, files, name)
    if feedback_dir is not None:
        notes.append(
            f"data.feedback_dir: {old.data.feedback_dir} holds feedback labelled for the previous dataset; "
            f"this dataset's goes to {feedback_dir}"
        )
    notes.extend(_kept_reports(root))
    return AddResult(name, directory, files, carved, report, params, removed, notes)


def _kept_reports(root: Path) -> list[str]:
    kept = sorted(
        str(p.relative_to(root)) for p in (root / REPORTS).rglob("*") if p.is_file() and p.name[0] != "."
    )
    if not kept:
        return []
    return [
        f"kept {', '.join(kept)}: not pipeline outputs; other commands (bench, drift-eval…) measured them on "
        "the previous dataset's model: run them again on the new one"
    ]


def _dvc_add(root: Path, target: Path) -> None:
    """`dvc add` the dataset folder: its .dvc file and .gitignore entry are written beside it."""
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # its `git add` hint: ours names those files and more
            repo.add(str(target))
    except DvcException as exc:
        raise DatasetAddError(f"`dvc add {target.relative_to(root)}` failed: {exc}") from None
