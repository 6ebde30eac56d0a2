"""Edit params.yaml as a person would: change values, keep every comment, the layout and the key order.

ruamel.yaml's round trip (DVC's own YAML library) reads and writes the shipped params.yaml byte for byte;
an explicit `null` is kept as `null`. The file is replaced whole (a temporary file renamed over it), so a
failure never leaves it half-written. The result is checked against the schema before it replaces
anything.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from training.params import Params, ParamsError, load_params


def _yaml() -> YAML:
    yaml = YAML()
    yaml.width = 4096  # never re-wrap a long value
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _rename_in_comment(section: CommentedMap, key: str, old: str, new: str) -> None:
    """A key's end-of-line comment that names the old value (`dir: … # versioned with DVC (…/old.dvc)`)
    names the new one."""
    tokens = section.ca.items.get(key)
    comment = tokens[2] if tokens and len(tokens) > 2 else None
    if comment is not None and old and old in comment.value:
        comment.value = comment.value.replace(old, new)


def update_params(path: Path, changes: Mapping[str, Mapping[str, Any]]) -> Params:
    """Set `changes[section][key] = value` in the params file at `path` (sections and keys must exist
    in the schema; a missing section is added at the end). Returns the params as the pipeline will read
    them; raises ParamsError, leaving the file as it was, when the result is invalid."""
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8")) or CommentedMap()
    for section_name, values in changes.items():
        section = document.setdefault(section_name, CommentedMap())
        for key, value in values.items():
            old = section.get(key)
            section[key] = value
            if isinstance(old, str) and isinstance(value, str) and isinstance(section, CommentedMap):
                _rename_in_comment(section, key, old, value)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        params = load_params(tmp)
    except ParamsError as exc:
        tmp.unlink(missing_ok=True)
        raise ParamsError(str(exc).replace(str(tmp), str(path))) from None
    os.replace(tmp, path)
    return params
