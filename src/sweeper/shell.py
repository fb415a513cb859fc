"""How the commands sweeper prints for the user to type name this Python's programs: by
name where the user's shell finds them so (an activated virtualenv), else by their absolute
path (a virtualenv that is not activated, as under ``make``), which works from anywhere."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def this_python() -> str:
    """The word that starts this interpreter: ``python`` (or its own name) where the shell
    finds it by that name, else its path."""
    if not sys.executable:
        return "python"
    exe = Path(sys.executable)
    for name in dict.fromkeys(("python", exe.name)):
        if _found_here(name, exe):
            return name
    return shlex.quote(str(exe))


def python_command(*words: str) -> str:
    """``words`` as one shell command run by ``this_python()``: ``python -m sweeper ...``."""
    return f"{this_python()} {shlex.join(words)}"


def this_script(name: str) -> str:
    """The word that starts the script ``name`` installed beside this interpreter (``mlflow``),
    or ``name`` where there is none."""
    if not sys.executable:
        return name
    beside = Path(sys.executable).parent / name
    if not beside.is_file() or _found_here(name, beside):
        return name
    return shlex.quote(str(beside))


def _found_here(name: str, path: Path) -> bool:
    """Whether the shell's ``name`` is ``path``: in its directory (a virtualenv's python links
    to the system's, whose directory has no packages of the virtualenv), and the same file
    (``python`` there may be another version than ``python3.12``)."""
    found = shutil.which(name)
    return (
        found is not None
        and Path(found).parent == path.parent
        and Path(found).resolve() == path.resolve()
    )
