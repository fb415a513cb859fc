"""What a run ran on: the code (git), the interpreter, the libraries, BLAS and its threads.

Captured once per process, or once per sweep when given the sweep's cache directory: the first
worker writes it there and every other worker reads it, since all of them share one checkout
and one interpreter. The BLAS thread count is read per run, when its tags are made, because
each run of a sweep has its own limit. What the tool itself writes inside the checkout (its
store, Hydra's output directories) is no change to the code: the command names it
(``leave_out``). No MLflow, no Hydra: the caller records the tags and files wherever it wants
(``sweeper.run`` sends them to MLflow).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

from threadpoolctl import threadpool_info

# The code that runs: its checkout is the one whose commit and changes are recorded.
SOURCE_DIR = Path(__file__).resolve().parent
ENVIRONMENT_DIR = "environment"
# Where a run's environment files go among its artifacts.
ARTIFACT_PATH = "provenance"
ENVIRONMENT_FILE = "environment.json"
PACKAGES_FILE = "requirements.txt"
DIFF_FILE = "git.diff"
# The distributions whose versions are tags of their own; every other one is in PACKAGES_FILE.
VERSIONED = {"numpy": "numpy", "sweeper": "sweeper", "mlflow": "mlflow", "hydra": "hydra-core"}
UNKNOWN = "unknown"

# Tags that say what a run ran on. A sweep whose runs differ in them ran on different code,
# environments or data (the report flags it); `reproduce` compares them with its own.
GIT_COMMIT_TAG = "git_commit"
GIT_DIRTY_TAG = "git_dirty"
GIT_DIFF_TAG = "git_diff_sha256"  # of a dirty tree alone
COMMIT_TAGS = (GIT_COMMIT_TAG, GIT_DIRTY_TAG, GIT_DIFF_TAG)
PYTHON_TAG = "env.python"
PLATFORM_TAG = "env.platform"
VERSION_TAGS = {name: f"env.{name}" for name in VERSIONED}
BLAS_TAG = "env.blas"
BLAS_THREADS_TAG = "env.blas_threads"
PACKAGES_TAG = "env.packages_sha256"
ENVIRONMENT_TAGS = (
    PYTHON_TAG,
    PLATFORM_TAG,
    *VERSION_TAGS.values(),
    BLAS_TAG,
    BLAS_THREADS_TAG,
    PACKAGES_TAG,
)
DATA_TAG = "data_sha256"
# The directory a run read its data files from, absolute (its links not resolved).
DATA_DIR_TAG = "data_dir_resolved"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _git(
    directory: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    success: tuple[int, ...] = (0,),
) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=directory,
        input=stdin,
        capture_output=True,
        text=True,
        # A file that is not UTF-8 (untracked, in the diff) is kept with U+FFFD for its
        # odd bytes rather than failing the run.
        errors="replace",
        env={**os.environ, **(env or {})},
    )
    if out.returncode not in success:
        raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout, out.stderr)
    return out.stdout


@cache
def git_commit(directory: Path | None = None) -> str:
    """The commit checked out in ``directory`` (the code that runs), or UNKNOWN."""
    try:
        return _git(directory or SOURCE_DIR, "rev-parse", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN


@dataclass(frozen=True)
class GitState:
    commit: str  # UNKNOWN outside a git checkout
    dirty: bool
    # The working tree against ``commit``, untracked (not ignored) files included, as
    # ``git apply`` takes it; empty when clean.
    diff: str


def git_state(directory: Path | None = None, leave_out: Iterable[Path] = ()) -> GitState:
    """The commit checked out in ``directory`` (the code that runs) and every change to it,
    but for those under ``leave_out`` (absolute paths of files or directories the tool itself
    writes); a path that holds the code is not left out. The changes are staged in a scratch
    copy of the index whose new objects go to a scratch directory, so neither the checkout's
    index nor its object store is written."""
    directory = directory or SOURCE_DIR
    try:
        commit = _git(directory, "rev-parse", "HEAD").strip()
        top = Path(_git(directory, "rev-parse", "--show-toplevel").strip())
        code = directory.resolve()
        inside = [
            str(path.relative_to(top))
            for path in (Path(p).resolve() for p in leave_out)
            if path.is_relative_to(top) and not code.is_relative_to(path)
        ]
        # git add refuses a pathspec, an exclusion too, that names an ignored path; such a
        # path is left out anyway. check-ignore's status is 1 when it ignores none of them.
        listed = "".join(f"{path}\0" for path in inside)
        ignored = _git(top, "check-ignore", "--stdin", "-z", stdin=listed, success=(0, 1))
        excluded = [f":(exclude,literal){path}" for path in set(inside) - set(ignored.split("\0"))]
        index, objects = (
            Path(directory, line)
            for line in _git(directory, "rev-parse", "--git-path", "index", "--git-path", "objects")
            .strip()
            .splitlines()
        )
        with tempfile.TemporaryDirectory() as tmp:
            scratch = {
                "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                "GIT_OBJECT_DIRECTORY": str(Path(tmp) / "objects"),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects.resolve()),
            }
            Path(scratch["GIT_OBJECT_DIRECTORY"]).mkdir()
            if index.is_file():
                # Its stat cache makes the add fast; its mtime keeps git's check of files
                # changed within the same second as the index (racily clean) working.
                shutil.copy2(index, scratch["GIT_INDEX_FILE"])
            else:
                _git(top, "read-tree", "HEAD", env=scratch)
            _git(top, "add", "--all", "--", ".", *excluded, env=scratch)
            diff = _git(top, "diff", "--cached", "--binary", "HEAD", env=scratch)
    except (OSError, subprocess.CalledProcessError):
        return GitState(UNKNOWN, False, "")
    return GitState(commit, bool(diff), diff)


def site_directories() -> list[str]:
    """The interpreter's site-packages and, where enabled, the user's."""
    directories = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return directories


def package_paths() -> list[str]:
    """Where the environment's distributions are: ``sys.path``, as pip reads it (a
    ``PYTHONPATH`` or ``--target`` install counts), but for directories inside a
    site-packages, a package's private copies (Ray puts its vendored colorama and psutil on
    its workers' path), which would make the same environment another there."""
    sites = [Path(directory).resolve() for directory in site_directories()]

    def private(entry: str) -> bool:
        path = Path(entry or ".").resolve()
        return any(path != top and path.is_relative_to(top) for top in sites)

    return [entry for entry in sys.path if not private(entry)]


def installed_packages() -> str:
    """Every distribution installed in the environment (:func:`package_paths`), ``name==version``
    a line, sorted (pip's requirements)."""
    names = {
        f"{dist.metadata['Name'].lower().replace('_', '-')}=={dist.version}"
        for dist in metadata.distributions(path=package_paths())
        if dist.metadata["Name"]
    }
    return "".join(f"{line}\n" for line in sorted(names))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas_pools() -> list[dict[str, object]]:
    return [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]


def blas_library() -> str:
    """The BLAS numpy calls, its version, threading layer and the kernels chosen for this CPU
    (OpenBLAS picks them at start-up; other kernels sum in another order)."""
    import numpy  # noqa: F401  (threadpoolctl sees only the libraries already loaded)

    pools = _blas_pools()
    return (
        "; ".join(
            f"{p['internal_api']} {p.get('version')} ({p.get('threading_layer', '?')}, "
            f"{p.get('architecture', '?')})"
            for p in pools
        )
        or "none found"
    )


def blas_threads() -> int:
    """The threads BLAS uses now: inside ``threadpool_limits``, the limit."""
    return max((int(p["num_threads"]) for p in _blas_pools()), default=1)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Environment:
    """What every run of a process (or a sweep) shares."""

    git: GitState
    python: str
    platform: str
    versions: dict[str, str]
    blas: str
    packages: str = field(repr=False)

    def tags(self) -> dict[str, str]:
        """The run's tags; ``BLAS_THREADS_TAG`` is read now, so call it inside the run's limit."""
        tags = {
            GIT_COMMIT_TAG: self.git.commit,
            GIT_DIRTY_TAG: str(self.git.dirty).lower(),
            PYTHON_TAG: self.python,
            PLATFORM_TAG: self.platform,
            **{VERSION_TAGS[name]: version for name, version in self.versions.items()},
            BLAS_TAG: self.blas,
            BLAS_THREADS_TAG: str(blas_threads()),
            PACKAGES_TAG: sha256_text(self.packages)[:16],
        }
        if self.git.dirty:
            tags[GIT_DIFF_TAG] = sha256_text(self.git.diff)[:16]
        return tags

    def write(self, directory: Path) -> list[Path]:
        """Write the environment to ``directory``; return the files a run keeps (the package
        list, and the diff when the tree is dirty)."""
        directory.mkdir(parents=True, exist_ok=True)
        described = asdict(self)
        described["git"] = {"commit": self.git.commit, "dirty": self.git.dirty}
        del described["packages"]
        (directory / ENVIRONMENT_FILE).write_text(json.dumps(described))
        files = [directory / PACKAGES_FILE]
        files[0].write_text(self.packages)
        if self.git.dirty:
            files.append(directory / DIFF_FILE)
            files[1].write_text(self.git.diff)
        return files

    @classmethod
    def read(cls, directory: Path) -> Environment:
        described = json.loads((directory / ENVIRONMENT_FILE).read_text())
        git = described.pop("git")
        diff = directory / DIFF_FILE
        return cls(
            git=GitState(git["commit"], git["dirty"], diff.read_text() if git["dirty"] else ""),
            packages=(directory / PACKAGES_FILE).read_text(),
            **described,
        )

    def files(self, directory: Path) -> list[Path]:
        """The files :meth:`write` left in ``directory``."""
        return [directory / PACKAGES_FILE] + ([directory / DIFF_FILE] if self.git.dirty else [])


# What the running command writes inside the checkout, as it named it to ``leave_out``.
_left_out: tuple[Path, ...] = ()


def leave_out(paths: Iterable[Path]) -> None:
    """Record no change under ``paths`` (the tool's own store and output directories, which
    the command that runs knows) in the environment captured from now on."""
    global _left_out
    chosen = tuple(sorted({Path(path).resolve() for path in paths}))
    if chosen != _left_out:
        _left_out = chosen
        _capture.cache_clear()


def data_tags(sources: dict[str, str], directory: Path | None) -> dict[str, str]:
    """The tags holding the SHA-256 of every data file a run read, by path, as JSON, and the
    directory it read them from (none for a dataset without files): a relative
    ``dataset.data_dir`` names another one from another directory."""
    tags = {DATA_TAG: json.dumps(dict(sorted(sources.items())))}
    if directory is not None:
        tags[DATA_DIR_TAG] = os.path.abspath(directory)
    return tags


@cache
def _capture() -> Environment:
    return Environment(
        git=git_state(leave_out=_left_out),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=f"{sys.platform} {platform.machine()}",
        versions={name: _version(dist) for name, dist in VERSIONED.items()},
        blas=blas_library(),
        packages=installed_packages(),
    )


def capture_environment(
    out_dir: Path, cache_dir: Path | None = None
) -> tuple[Environment, list[Path]]:
    """The environment and the files a run keeps of it. With ``cache_dir`` (a sweep's), the
    first caller captures it there and every other one reads it; else it is captured once per
    process and its files are written under ``out_dir``."""
    if cache_dir is None:
        environment = _capture()
        return environment, environment.write(out_dir / ENVIRONMENT_DIR)
    directory = cache_dir / ENVIRONMENT_DIR
    if not (directory / ENVIRONMENT_FILE).is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with (cache_dir / f".{ENVIRONMENT_DIR}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (directory / ENVIRONMENT_FILE).is_file():
                staging = Path(tempfile.mkdtemp(prefix=f".{ENVIRONMENT_DIR}-", dir=cache_dir))
                _capture().write(staging)
                os.rename(staging, directory)
    environment = Environment.read(directory)
    return environment, environment.files(directory)
