"""A clean start for a new dataset: the pipeline's results on the previous one leave the workspace.

Which results belong to the data is DVC's own knowledge, not a list kept here: the stages that read the
data folder and every stage downstream of them (DVC's stage graph), with each one's outputs, metrics and
plots. Removing those files and their entries in dvc.lock makes `dvc status` show every such stage as
changed and `dvc metrics show` / `dvc plots show` show nothing until the pipeline runs on the new data.
Nothing is lost: cached outputs stay in DVC's cache and the committed ones in git, so checking out the
previous params.yaml, .dvc file, dvc.lock and reports/ (then `dvc checkout`) brings them back untouched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
from ruamel.yaml import YAML

LOCK_FILE = "dvc.lock"


@dataclass(frozen=True)
class ResetPlan:
    """The stages whose results came from the data, and their output paths (absolute)."""

    stages: list[str]
    outputs: list[Path]


def _reads(stage: object, data_dir: Path) -> bool:
    for dep in getattr(stage, "deps", []):
        path = Path(dep.fs_path)
        if path == data_dir or data_dir in path.parents or path in data_dir.parents:
            return True
    return False


def plan_reset(root: Path, data_dir: Path) -> ResetPlan:
    """What the dataset in `data_dir` produced, by the pipeline (dvc.yaml, params.yaml) as it is now."""
    from dvc.repo import Repo

    data_dir = data_dir.resolve()
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        readers = [stage for stage in repo.index.stages if _reads(stage, data_dir)]
        affected = set(readers)
        for stage in readers:
            affected |= nx.ancestors(graph, stage)
        names = sorted(stage.addressing for stage in affected)
        outputs = sorted({Path(out.fs_path) for stage in affected for out in stage.outs})
    return ResetPlan(names, outputs)


def _remove(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False


def forget_stages(lock: Path, stages: Iterable[str]) -> list[str]:
    """Drop the stages' entries from dvc.lock (the file goes when none is left); the names dropped."""
    if not lock.is_file():
        return []
    yaml = YAML()  # DVC writes dvc.lock with ruamel.yaml too
    document = yaml.load(lock.read_text(encoding="utf-8")) or {}
    entries = document.get("stages") or {}
    dropped = [name for name in stages if name in entries]
    for name in dropped:
        del entries[name]
    if not entries:
        lock.unlink()
        return dropped
    tmp = lock.with_name(f".{lock.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        yaml.dump(document, handle)
    os.replace(tmp, lock)
    return dropped


def apply_reset(root: Path, plan: ResetPlan, also: Iterable[Path] = ()) -> list[Path]:
    """Remove the plan's outputs (and `also`: files the stages write beside their declared outputs),
    forget its stages in dvc.lock; returns what was removed, relative to `root`."""
    removed = [path for path in [*plan.outputs, *also] if _remove(path)]
    forget_stages(root / LOCK_FILE, plan.stages)
    return sorted({path.resolve().relative_to(root.resolve()) for path in removed})
