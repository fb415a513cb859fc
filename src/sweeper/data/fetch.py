"""Download the study datasets from their official locations, verified before the loaders see them.

Each dataset is a table of remote files with their published checksums and the URLs that
serve them (the canonical one first, then known mirrors). A file is downloaded to
``<file>.part`` beside its destination, verified, and only then renamed into place, so no
partial or unverified file ever carries a name a loader reads; an interrupted download resumes
from its ``.part`` file where the server honours HTTP Range requests, and starts clean where
it does not. A fetch locks its directory, so a second one into it waits, then finds the data
there. Archives are then turned into what the loaders read: CIFAR-10's tar is extracted
with tarfile's ``data`` filter (its members checked alike where Python has none), notMNIST's
PNG folders are read into ``notmnist.npz``.
The command is ``python -m sweeper.data fetch`` (``sweeper.data.__main__``).
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np

from sweeper.data.cifar import BATCHES, SUBDIRECTORY
from sweeper.data.idx import IDX_FILES
from sweeper.data.locations import SYSTEM_COPIES, default_data_dir
from sweeper.data.npz import IMAGE_SIZE, NOTMNIST_FILE
from sweeper.shell import python_command

MIRROR_ENV = "SWEEPER_DATA_MIRROR"
MIRROR_SCHEMES = ("http", "https", "file")
HASH_LENGTHS = {"sha256": 64, "md5": 32}
TIMEOUT_S = 30.0
CHUNK = 1 << 16
FETCH_MODULE = "sweeper.data"


class FetchError(Exception):
    """A download or preparation that failed; the message is one line that says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    checksum: str  # "<algorithm>:<hex digest>", an algorithm of HASH_LENGTHS
    size: int | None = None  # bytes, where a size is published


@dataclass(frozen=True)
class Source:
    """Where one dataset comes from and what its loader reads once it is fetched."""

    bases: tuple[str, ...]  # base URLs, canonical first; a file's URL is base + name
    files: tuple[RemoteFile, ...]
    ready: tuple[str, ...]  # paths under data_dir that exist once the dataset is fetched
    # Turns a downloaded archive into ``ready`` in data_dir; returns a line for the user.
    prepare: Callable[[Path, Path], str] | None = None


_IDX_READY = tuple(f"{name}.gz" for pair in IDX_FILES.values() for name in pair)


def _idx(*checksums_and_sizes: tuple[str, int]) -> tuple[RemoteFile, ...]:
    """The four gzipped IDX files, in IDX_FILES's order, with their checksums and sizes."""
    return tuple(
        RemoteFile(name, checksum, size)
        for name, (checksum, size) in zip(_IDX_READY, checksums_and_sizes, strict=True)
    )


NOTMNIST_CLASSES = "ABCDEFGHIJ"
# notMNIST_small has no published train/test split: one font in seven (MNIST's test share),
# chosen with this seed, is held out, every letter of it.
NOTMNIST_TEST_SHARE = 7
NOTMNIST_SPLIT_SEED = 0


def _extract_safely(tar: tarfile.TarFile, work: Path) -> None:
    """Extract ``tar`` into ``work``; raise TarError for a member that would land outside it."""
    if hasattr(tarfile, "data_filter"):
        # The data filter refuses members outside work/, links out of it, devices.
        tar.extractall(work, filter="data")
        return
    # Python 3.11.0-3.11.3 has no filters: plain files and directories inside work/ only.
    members = tar.getmembers()
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"{member.name!r} is a link or a device")
        if member.name.startswith("/") or ".." in member.name.split("/"):
            raise tarfile.TarError(f"{member.name!r} would land outside the target directory")
    tar.extractall(work, members)


def extract_cifar10(archive: Path, data_dir: Path) -> str:
    """Extract ``cifar-10-batches-py/`` from ``archive`` into ``data_dir``; drop the archive."""
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=data_dir))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _extract_safely(tar, work)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise FetchError(f"cannot extract {archive}: {error}") from None
        batches = work / SUBDIRECTORY
        missing = [b for split in BATCHES.values() for b in split if not (batches / b).is_file()]
        if missing:
            raise FetchError(f"{archive} holds no {SUBDIRECTORY}/{missing[0]}")
        target = data_dir / SUBDIRECTORY
        if target.exists():
            shutil.rmtree(target)
        os.replace(batches, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    archive.unlink()
    return f"extracted {target}"


def _notmnist_images(archive: Path) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """Every readable 28x28 PNG under ``<top>/<letter>/`` in ``archive``, read in memory."""
    from PIL import Image  # Pillow comes with matplotlib; only notMNIST needs it

    images: list[np.ndarray] = []
    labels: list[int] = []
    fonts: list[str] = []
    unreadable: list[str] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 3 or len(parts[1]) != 1:
                    continue
                letter = NOTMNIST_CLASSES.find(parts[1])
                if letter < 0 or not parts[2].endswith(".png"):
                    continue
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file always has one
                try:
                    with Image.open(io.BytesIO(stream.read())) as image:
                        pixels = np.asarray(image.convert("L"), dtype=np.uint8)
                except (OSError, ValueError, SyntaxError):
                    # Pillow's errors for a truncated, empty or non-image file.
                    unreadable.append(member.name)
                    continue
                if pixels.shape != IMAGE_SIZE:
                    unreadable.append(member.name)
                    continue
                images.append(pixels)
                labels.append(letter)
                fonts.append(parts[2])
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FetchError(f"cannot read {archive}: {error}") from None
    return images, labels, fonts, unreadable


def convert_notmnist(archive: Path, data_dir: Path) -> str:
    """Read notMNIST_small's PNG folders A..J into ``notmnist.npz``, held-out fonts as test."""
    images, labels, fonts, unreadable = _notmnist_images(archive)
    if not images:
        raise FetchError(f"{archive} holds no readable notMNIST PNG under <folder>/A..J/")
    # A file's name is its font (the same name in every letter's folder): holding out whole
    # fonts keeps every font on one side of the split.
    font_of = np.array(fonts)
    names = np.unique(font_of)
    rng = np.random.default_rng(NOTMNIST_SPLIT_SEED)
    held_out = rng.permutation(names)[: len(names) // NOTMNIST_TEST_SHARE]
    test = np.isin(font_of, held_out)
    x = np.stack(images)
    y = np.array(labels, dtype=np.int64)
    partial = data_dir / f"{NOTMNIST_FILE}.part"
    try:
        with open(partial, "wb") as file:
            np.savez_compressed(
                file, x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test]
            )
        os.replace(partial, data_dir / NOTMNIST_FILE)
    finally:
        partial.unlink(missing_ok=True)
    archive.unlink()
    skipped = f", skipped {len(unreadable)} unreadable: {', '.join(unreadable)}" * bool(unreadable)
    return (
        f"wrote {data_dir / NOTMNIST_FILE}: {int((~test).sum()):,} train and {int(test.sum()):,}"
        f" test images (fonts held out, not a standard split){skipped}"
    )


# The tables. Every URL and checksum below was read from the named source; MD5s from
# torchvision name the same bytes as the SHA-256s where both exist.
SOURCES: dict[str, Source] = {
    # URLs: MNIST's page (yann.lecun.com/exdb/mnist), torchvision's mirror
    # (torchvision/datasets/mnist.py), TFDS's (tensorflow_datasets/url_checksums/mnist.txt).
    # SHA-256 and sizes: TFDS's mnist.txt.
    "mnist": Source(
        bases=(
            "http://yann.lecun.com/exdb/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        files=_idx(
            ("sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            ("sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            ("sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            ("sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        ),
        ready=_IDX_READY,
    ),
    # URLs: Zalando's S3 bucket (the README of zalandoresearch/fashion-mnist, torchvision),
    # Keras's copy (keras/src/datasets/fashion_mnist.py), the repository's data/fashion/.
    # SHA-256 and sizes: TFDS's url_checksums/fashion_mnist.txt (Keras lists the same hashes).
    "fashion_mnist": Source(
        bases=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        files=_idx(
            ("sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            ("sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            ("sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            ("sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        ),
        ready=_IDX_READY,
    ),
    # URL: CODH's (the README of rois-codh/kmnist; torchvision and TFDS use it too, no mirror).
    # SHA-256 and sizes: TFDS's url_checksums/kmnist.txt.
    "kmnist": Source(
        bases=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files=_idx(
            ("sha256:51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", 18165135),
            ("sha256:e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", 29497),
            ("sha256:edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", 3041136),
            ("sha256:20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", 5120),
        ),
        ready=_IDX_READY,
    ),
    # URL: Krizhevsky's page (www.cs.toronto.edu/~kriz/cifar.html), the one torchvision and
    # Keras use. SHA-256: keras/src/datasets/cifar10.py (torchvision's MD5:
    # c58f30108f718f92721af3b95e74349a). No size is published beside them.
    "cifar10": Source(
        bases=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            ),
        ),
        ready=tuple(f"{SUBDIRECTORY}/{b}" for split in BATCHES.values() for b in split),
        prepare=extract_cifar10,
    ),
    # URLs: Yaroslav Bulatov's (yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html) and the
    # copy Udacity's deep-learning course downloads (commondatastorage.../books1000/). The
    # author publishes no checksum: the size is the one that course checks, the MD5 the one
    # third-party PyTorch loaders check (a SplitNotMNIST class); neither is the author's.
    "notmnist": Source(
        bases=(
            "http://yaroslavvb.com/upload/notMNIST/",
            "https://commondatastorage.googleapis.com/books1000/",
        ),
        files=(
            RemoteFile("notMNIST_small.tar.gz", "md5:c9890a473a9769fda4bdf314aaf500dd", 8458043),
        ),
        ready=(NOTMNIST_FILE,),
        prepare=convert_notmnist,
    ),
}


def fetch_hint(name: str, data_dir: str | Path | None = None) -> str:
    """The command that fetches ``name`` into ``data_dir`` (its default when None)."""
    where = (
        []
        if data_dir is None or Path(data_dir).expanduser() == default_data_dir(name)
        else ["--dir", str(data_dir)]
    )
    return python_command("-m", FETCH_MODULE, "fetch", name, *where)


def file_urls(name: str, file: RemoteFile, mirror: str | None) -> list[str]:
    """Where ``file`` of dataset ``name`` is downloaded from: ``mirror/<name>/<file>`` alone
    when a mirror is set, else each of the dataset's base URLs in turn."""
    if mirror:
        return [f"{mirror.rstrip('/')}/{name}/{file.name}"]
    return [base + file.name for base in SOURCES[name].bases]


def mirror_url(mirror: str, given_as: str) -> str:
    """``mirror`` as a base URL, a directory there as its ``file://`` URL; a FetchError that
    names ``given_as`` (the option or variable) for anything else."""
    if urllib.parse.urlsplit(mirror).scheme in MIRROR_SCHEMES:
        return mirror
    directory = Path(mirror).expanduser()
    if directory.is_dir():
        return directory.resolve().as_uri()
    raise FetchError(
        f"{given_as} needs a URL: http://..., https://... or file:///..., or a directory"
        f" (got {mirror!r})"
    )


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file at ``path`` by ``algorithm`` (``hashlib``'s name)."""
    with open(path, "rb") as stream:
        # usedforsecurity=False: MD5 stays usable under FIPS.
        return hashlib.file_digest(
            stream, lambda: hashlib.new(algorithm, usedforsecurity=False)
        ).hexdigest()


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


class Progress:
    """One self-overwriting line of size and speed on a terminal; silent anywhere else."""

    def __init__(self, label: str, total: int | None, start: int, out: TextIO) -> None:
        self.label, self.total, self.done, self.start = label, total, start, start
        self.out = out
        self.live = out.isatty()
        self.began = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.live and now - self.last >= 0.1:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        speed = (self.done - self.start) / max(now - self.began, 1e-9)
        size = f"{_mib(self.done)} / {_mib(self.total)}" if self.total else _mib(self.done)
        self.out.write(f"\r{self.label}  {size}  {_mib(speed)}/s\x1b[K")
        self.out.flush()

    def close(self) -> None:
        if self.live:
            self._draw(time.monotonic())
            self.out.write("\n")
            self.out.flush()


def _stream(url: str, partial: Path, label: str, size: int | None, out: TextIO) -> None:
    """Append ``url``'s bytes to ``partial`` (resuming it when the server allows); raise
    OSError or HTTPException when the transfer fails or stops short."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": "sweeper-data-fetch"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S
        )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is no prefix of this one
            partial.unlink()
            return _stream(url, partial, label, size, out)
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server sends the whole file: start clean
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        progress = Progress(label, total, offset, out)
        received = offset
        with open(partial, "ab" if offset else "wb") as file:
            try:
                while block := response.read(CHUNK):
                    file.write(block)
                    received += len(block)
                    progress.update(len(block))
            finally:
                progress.close()
    if total is not None and received < total:
        raise http.client.IncompleteRead(b"", total - received)


def _failures(failures: list[tuple[str, str]]) -> str:
    """``url, url: reason`` when every URL failed alike, else ``url: reason; url: reason``."""
    reasons = {reason for _, reason in failures}
    if len(reasons) == 1:
        return f"{', '.join(url for url, _ in failures)}: {reasons.pop()}"
    return "; ".join(f"{url}: {reason}" for url, reason in failures)


def manual_steps(name: str, data_dir: Path, mirror: str | None) -> str:
    """What to do by hand without network: the files, where from, where to."""
    files = SOURCES[name].files
    names = ", ".join(f.name for f in files)
    base = file_urls(name, files[0], mirror)[0].removesuffix(files[0].name)
    them = "them" if len(files) > 1 else "it"
    return f"download {names} from {base} by hand, put {them} in {data_dir} and run this again"


class _Failure(NamedTuple):
    reason: str
    mismatch: bool  # the server sent a whole file, not the official one


def _attempt(url: str, partial: Path, label: str, file: RemoteFile, out: TextIO) -> _Failure | None:
    """Download ``url`` into ``partial`` and verify it: None when it is ``file``, else why not
    (a part that fails its checksum is deleted)."""
    algorithm, expected = file.checksum.split(":")
    try:
        _stream(url, partial, label, file.size, out)
    except (OSError, http.client.HTTPException) as error:
        # urllib's URLError and HTTPError, refused connections and timeouts are OSErrors.
        if isinstance(error, http.client.IncompleteRead):
            return _Failure(f"stopped {error.expected:,} bytes short", mismatch=False)
        return _Failure(str(getattr(error, "reason", None) or error), mismatch=False)
    got = file_digest(partial, algorithm)
    if got != expected:
        partial.unlink()
        return _Failure(f"{algorithm} {got}, expected {expected} (deleted)", mismatch=True)
    return None


def download(name: str, file: RemoteFile, data_dir: Path, mirror: str | None, out: TextIO) -> None:
    """Put ``file`` in ``data_dir``, verified: a copy already there is checked, not fetched."""
    destination = data_dir / file.name
    if destination.is_file():
        check_in_place(destination, file)
        return
    partial = data_dir / f"{file.name}.part"
    label = f"{name}: {file.name}"
    failures: list[tuple[str, str]] = []
    mismatch = False
    for url in file_urls(name, file, mirror):
        resumed = partial.exists()
        failure = _attempt(url, partial, label, file, out)
        if failure is not None and resumed and not partial.exists():
            # The part resumed was no prefix of this file (it failed its checksum): from the
            # first byte once more.
            failure = _attempt(url, partial, label, file, out)
        if failure is None:
            os.replace(partial, destination)
            return
        failures.append((url, failure.reason))
        mismatch |= failure.mismatch
    kept = " (the part received is kept: the same command resumes it)" if partial.exists() else ""
    # Putting a server's wrong copy there by hand would fail the same check.
    advice = (
        "The server's copy differs from the official file: try another server with --mirror URL"
        if mismatch
        else f"Without network: {manual_steps(name, data_dir, mirror)}"
    )
    raise FetchError(f"cannot download {file.name} from {_failures(failures)}{kept}. {advice}")


def check_in_place(path: Path, file: RemoteFile) -> None:
    """Raise a FetchError unless ``path``, a copy of ``file`` already there (put by hand, or
    an earlier fetch), has the published checksum."""
    algorithm, expected = file.checksum.split(":")
    got = file_digest(path, algorithm)
    if got != expected:
        raise FetchError(
            f"{path} is there but its {algorithm} is {got}, expected {expected}:"
            " delete it and run this again"
        )


def is_fetched(name: str, data_dir: Path) -> bool:
    return all((data_dir / path).is_file() for path in SOURCES[name].ready)


def fetch(
    name: str,
    data_dir: Path | None = None,
    mirror: str | None = None,
    out: TextIO = sys.stderr,
) -> list[str]:
    """Download, verify and prepare ``name`` in ``data_dir`` (its default when None).

    ``mirror`` (a URL or a directory) replaces every base URL (``mirror/<name>/<file>``); None
    reads ``$SWEEPER_DATA_MIRROR``. Returns lines that say what was done.
    """
    if name not in SOURCES:
        raise FetchError(f"unknown dataset {name!r}; fetch one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    target = Path(data_dir).expanduser() if data_dir is not None else default_data_dir(name)
    given_as = "--mirror" if mirror is not None else MIRROR_ENV
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if mirror:
        mirror = mirror_url(mirror, given_as)
    if is_fetched(name, target):
        return _already_there(name, target)
    if target.exists() and not target.is_dir():
        raise FetchError(f"{target} is a file: fetch into a directory (--dir)")
    try:
        target.mkdir(parents=True, exist_ok=True)
        claim = os.open(target, os.O_RDONLY)
    except OSError as error:
        raise FetchError(f"cannot create {target}: {error.strerror}") from None
    try:
        # Another fetch into the directory is waited for: two would write one .part file.
        fcntl.flock(claim, fcntl.LOCK_EX)
        if is_fetched(name, target):
            return _already_there(name, target)
        lines = []
        for file in source.files:
            download(name, file, target, mirror, out)
            size = (target / file.name).stat().st_size
            algorithm = file.checksum.split(":")[0]
            lines.append(f"{name}: {file.name} ({_mib(size)}) {algorithm} verified")
            if source.prepare is not None:
                lines.append(f"{name}: {source.prepare(target / file.name, target)}")
        lines.append(f"{name}: ready in {target}")
        return lines
    finally:
        os.close(claim)


def _already_there(name: str, target: Path) -> list[str]:
    """The line for a dataset fetched before, its files there checked."""
    system = SYSTEM_COPIES.get(name)
    if system is not None and target.resolve() == system.resolve():
        # A distribution's copy: recompressed, the same arrays in other bytes.
        return [f"{name}: already in {target}"]
    # Files put there by hand are checked as downloaded ones are (an archive may have
    # been removed once prepared).
    there = [file for file in SOURCES[name].files if (target / file.name).is_file()]
    for file in there:
        check_in_place(target / file.name, file)
    return [f"{name}: already in {target}, {len(there)} file(s) verified"]


if __name__ == "__main__":
    # Not the command (that is sweeper.data's __main__): it names the command rather than run
    # it.
    command = python_command("-m", FETCH_MODULE, "fetch", *(sys.argv[1:] or ["NAME"]))
    print(f"error: this module is not the command; run: {command}", file=sys.stderr)
    sys.exit(2)
