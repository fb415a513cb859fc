"""`python -m sweeper.data fetch`: fixture archives in the real formats, served on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io
import shlex
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SHARED_MNIST, idx_bytes, write_cifar
from services import free_port
from sweeper.data import DATASETS, MissingDataError, load_dataset, locations
from sweeper.data import fetch as fetch_module
from sweeper.data.__main__ import main
from sweeper.data.fetch import (
    HASH_LENGTHS,
    MIRROR_ENV,
    SOURCES,
    FetchError,
    Progress,
    RemoteFile,
    Source,
    fetch,
    fetch_hint,
)

IDX_NAMES = [f.name for f in SOURCES["mnist"].files]


def needs_shared_mnist(*names: str) -> pytest.MarkDecorator:
    """Skip unless every official MNIST file in ``names`` is in SHARED_MNIST."""
    missing = [name for name in names if not (SHARED_MNIST / name).is_file()]
    return pytest.mark.skipif(
        bool(missing), reason=f"official MNIST files not in {SHARED_MNIST}: {', '.join(missing)}"
    )


@dataclass
class FileServer:
    """Serves ``files`` (URL path -> bytes); honours Range when ``ranges``; a path in
    ``truncate`` is cut off halfway once; ``pause`` halfway through every file."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    ranges: bool = True
    pause: float = 0.0  # seconds between a file's two halves
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: FileServer  # set on a subclass per server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.state
        wanted = self.headers.get("Range")
        state.requests.append((self.path, wanted))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if wanted and state.ranges:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if self.path in state.truncate:
            state.truncate.discard(self.path)
            rest = rest[: len(rest) // 2]
        if state.pause:
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            time.sleep(state.pause)
            rest = rest[len(rest) // 2 :]
        self.wfile.write(rest)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A download the test interrupts hangs up mid-file: no traceback in the test output.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    state = FileServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = type("Handler", (_Handler,), {"state": state})
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's per-user cache is its own, and no mirror is set."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return tmp_path / "cache" / "sweeper"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def mnist_files(n_train: int = 60, n_test: int = 20) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28)),
        np.arange(n_train) % 10,
        rng.integers(0, 256, (n_test, 28, 28)),
        np.arange(n_test) % 10,
    ]
    return {name: gzip.compress(idx_bytes(a)) for name, a in zip(IDX_NAMES, arrays, strict=True)}


def serve(
    monkeypatch: pytest.MonkeyPatch,
    server: FileServer,
    name: str,
    files: dict[str, bytes],
    *,
    bases: tuple[str, ...] | None = None,
    checksums: dict[str, str] | None = None,
) -> None:
    """Serve ``files`` under /<name>/ and make them dataset ``name``'s table."""
    for file, data in files.items():
        server.files[f"/{name}/{file}"] = data
    checksums = checksums or {}
    table = tuple(
        RemoteFile(file, checksums.get(file, sha256(data)), len(data))
        for file, data in files.items()
    )
    real = SOURCES[name]
    source = Source(bases or (f"{server.url}/{name}/",), table, real.ready, real.prepare)
    monkeypatch.setitem(SOURCES, name, source)


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


def test_fetch_puts_verified_files_where_the_loader_looks(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    files = mnist_files()
    serve(monkeypatch, server, "mnist", files)
    lines = fetch("mnist")
    assert lines[-1] == f"mnist: ready in {cache / 'mnist'}"
    assert sum("sha256 verified" in line for line in lines) == 4
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(IDX_NAMES)
    for name, data in files.items():
        assert (cache / "mnist" / name).read_bytes() == data
    data = load_dataset("mnist", val_fraction=0.5)  # data_dir null: the cache
    assert len(data.y_train) + len(data.y_val) == 60 and len(data.y_test) == 20

    server.requests.clear()
    assert fetch("mnist") == [f"mnist: already in {cache / 'mnist'}, 4 file(s) verified"]
    assert server.requests == []


def test_files_put_in_place_by_hand_are_verified(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    # What the error without network asks for: the files, in the directory it names.
    target = cache / "mnist"
    target.mkdir(parents=True)
    files = mnist_files()
    serve(monkeypatch, server, "mnist", files)  # their checksums, the published ones here
    for name, data in files.items():
        (target / name).write_bytes(data)
    test_labels, train_labels = "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"
    (target / test_labels).write_bytes(files[train_labels])  # the wrong file under its name
    with pytest.raises(FetchError) as raised:
        fetch("mnist")
    assert str(raised.value).startswith(f"{target / test_labels} is there but its sha256 is ")
    assert server.requests == []


def test_checksum_mismatch_deletes_the_download_and_names_both_hashes(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    files = mnist_files()
    wrong = "sha256:" + "0" * 64
    serve(monkeypatch, server, "mnist", files, checksums={IDX_NAMES[1]: wrong})
    with pytest.raises(FetchError) as info:
        fetch("mnist")
    message = str(info.value)
    got = hashlib.sha256(files[IDX_NAMES[1]]).hexdigest()
    assert message.startswith(f"cannot download {IDX_NAMES[1]} from {server.url}/mnist/")
    assert message.endswith(
        f"{IDX_NAMES[1]}: sha256 {got}, expected {'0' * 64} (deleted). The server's copy differs"
        " from the official file: try another server with --mirror URL"
    )
    assert "\n" not in message
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == [IDX_NAMES[0]]


def test_a_corrupt_mirror_falls_back_to_the_next(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    files = mnist_files()
    for name, data in files.items():
        server.files[f"/bad/{name}"] = data[:-1] + b"x"
    bases = (refused_url(), f"{server.url}/bad/", f"{server.url}/mnist/")
    serve(monkeypatch, server, "mnist", files, bases=bases)
    fetch("mnist")
    for name, data in files.items():
        assert (cache / "mnist" / name).read_bytes() == data


@pytest.mark.parametrize("ranges", [True, False])
def test_truncated_download_keeps_nothing_in_place_and_the_next_fetch_completes_it(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path, ranges: bool
) -> None:
    files = mnist_files()
    serve(monkeypatch, server, "mnist", files)
    images = IDX_NAMES[0]
    server.truncate.add(f"/mnist/{images}")
    server.ranges = ranges
    with pytest.raises(FetchError, match=r"stopped [\d,]+ bytes short.*the same command resumes"):
        fetch("mnist")
    directory = cache / "mnist"
    assert not (directory / images).exists()
    assert (directory / f"{images}.part").stat().st_size == len(files[images]) // 2

    server.requests.clear()
    fetch("mnist")
    assert (directory / images).read_bytes() == files[images]
    assert not list(directory.glob("*.part"))
    # The second request asked for the rest; a server without Range support sent it all.
    assert server.requests[0] == (f"/mnist/{images}", f"bytes={len(files[images]) // 2}-")


def test_interrupt_leaves_only_a_part_file_and_exits_130(
    server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve(monkeypatch, server, "mnist", mnist_files(n_train=2000))
    monkeypatch.setattr(fetch_module, "CHUNK", 1024)

    def interrupt(self: Progress, n: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "update", interrupt)
    assert main(["fetch", "mnist"]) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    assert [p.name for p in (cache / "mnist").iterdir()] == [f"{IDX_NAMES[0]}.part"]


def test_offline_is_one_line_naming_the_url_and_the_manual_alternative(
    monkeypatch: pytest.MonkeyPatch, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = refused_url()
    table = SOURCES["mnist"]
    monkeypatch.setitem(SOURCES, "mnist", Source((url,), table.files, table.ready))
    assert main(["fetch", "mnist"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot download")
    assert f"from {url}{IDX_NAMES[0]}: [Errno 111] Connection refused. Without network:" in err
    names = ", ".join(IDX_NAMES)
    assert err.endswith(
        f"download {names} from {url} by hand, put them in {cache / 'mnist'} and run this again\n"
    )


def test_a_file_put_there_by_hand_is_verified_not_downloaded(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    files = mnist_files()
    real = SOURCES["mnist"]
    table = tuple(RemoteFile(name, sha256(data)) for name, data in files.items())
    monkeypatch.setitem(SOURCES, "mnist", Source((refused_url(),), table, real.ready))
    (cache / "mnist").mkdir(parents=True)
    for name, data in files.items():
        (cache / "mnist" / f"{name}").write_bytes(data)
    (cache / "mnist" / IDX_NAMES[3]).unlink()
    with pytest.raises(FetchError, match=f"cannot download {IDX_NAMES[3]}"):
        fetch("mnist")  # the first three were checked and kept, the fourth needs the network
    (cache / "mnist" / IDX_NAMES[0]).write_bytes(b"garbage")
    bad = hashlib.sha256(b"garbage").hexdigest()
    with pytest.raises(FetchError, match=f"{IDX_NAMES[0]} is there but its sha256 is {bad}"):
        fetch("mnist")
    assert (cache / "mnist" / IDX_NAMES[0]).read_bytes() == b"garbage"  # the user's file stays


@pytest.mark.parametrize("how", ["env", "flag"])
def test_mirror_replaces_the_base_urls(
    server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    files = mnist_files()
    serve(monkeypatch, server, "mnist", files, bases=(refused_url(),))
    for name, data in files.items():
        server.files[f"/internal/mnist/{name}"] = data
    mirror = f"{server.url}/internal/"
    if how == "env":
        monkeypatch.setenv(MIRROR_ENV, mirror)
        args = ["fetch", "mnist"]
    else:
        args = ["fetch", "mnist", "--mirror", mirror]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"mnist: ready in {cache / 'mnist'}"
    assert {path for path, _ in server.requests} == {f"/internal/mnist/{n}" for n in IDX_NAMES}


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_mirror_without_a_scheme_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, cache: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    mirror = "mirror.example.com/datasets"
    if how == "env":
        monkeypatch.setenv(MIRROR_ENV, mirror)
        args, named = ["fetch", "mnist"], MIRROR_ENV
    else:
        args, named = ["fetch", "mnist", "--mirror", mirror], "--mirror"
    assert main(args) == 1
    assert capsys.readouterr().err == (
        f"error: {named} needs a URL: http://..., https://... or file:///..., or a directory"
        f" (got {mirror!r})\n"
    )
    assert not (cache / "mnist").exists()


def test_a_directory_is_a_mirror(
    monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path
) -> None:
    files = mnist_files()
    real = SOURCES["mnist"]
    table = tuple(RemoteFile(name, sha256(data), len(data)) for name, data in files.items())
    monkeypatch.setitem(SOURCES, "mnist", Source((refused_url(),), table, real.ready))
    (tmp_path / "copy" / "mnist").mkdir(parents=True)
    for name, data in files.items():
        (tmp_path / "copy" / "mnist" / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert fetch("mnist", mirror="copy")[-1] == f"mnist: ready in {cache / 'mnist'}"
    assert {p.name: p.read_bytes() for p in (cache / "mnist").iterdir()} == files


def cifar_archive(tmp_path: Path, evil: bool = False) -> bytes:
    batches = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar(batches)
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
        if evil:
            payload = b"outside"
            member = tarfile.TarInfo("cifar-10-batches-py/../../evil.txt")
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    return stream.getvalue()


def test_cifar10_archive_is_extracted_and_read(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path
) -> None:
    serve(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": cifar_archive(tmp_path)})
    lines = fetch("cifar10")
    assert f"cifar10: extracted {cache / 'cifar10' / 'cifar-10-batches-py'}" in lines
    assert [p.name for p in (cache / "cifar10").iterdir()] == ["cifar-10-batches-py"]
    data = load_dataset("cifar10", normalization="channel")
    assert data.image_shape == (3, 32, 32)
    assert len(data.y_train) + len(data.y_val) == 100 and len(data.y_test) == 20


def test_tar_member_outside_the_target_is_refused(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path, tmp_path: Path
) -> None:
    archive = cifar_archive(tmp_path, evil=True)
    serve(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": archive})
    with pytest.raises(FetchError, match=r"cannot extract .*evil\.txt"):
        fetch("cifar10")
    assert not list(tmp_path.rglob("evil.txt"))
    # The verified archive stays for a retry; nothing the loader reads was made.
    assert [p.name for p in (cache / "cifar10").iterdir()] == ["cifar-10-python.tar.gz"]


@pytest.fixture
def tarfile_without_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """tarfile as Python 3.11.0-3.11.3 has it: no filters, and extractall takes no filter=."""
    monkeypatch.delattr(tarfile, "data_filter")
    real = tarfile.TarFile.extractall

    def extractall(
        self: tarfile.TarFile,
        path: str | Path = ".",
        members: list[tarfile.TarInfo] | None = None,
        *,
        numeric_owner: bool = False,
    ) -> None:
        # Unfiltered, as then: anything the archive names is written.
        real(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")

    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)


@pytest.mark.usefixtures("tarfile_without_filters")
def test_a_python_without_tar_filters_extracts_cifar10_and_refuses_a_member_outside(
    server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": cifar_archive(tmp_path)})
    assert f"cifar10: extracted {cache / 'cifar10' / 'cifar-10-batches-py'}" in fetch("cifar10")
    assert len(load_dataset("cifar10").y_test) == 20

    evil = cifar_archive(tmp_path / "evil", evil=True)
    serve(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": evil})
    assert main(["fetch", "cifar10", "--dir", str(tmp_path / "other")]) == 1
    archive = tmp_path / "other" / "cifar-10-python.tar.gz"
    assert capsys.readouterr().err == (
        f"error: cannot extract {archive}: 'cifar-10-batches-py/../../evil.txt' would land"
        " outside the target directory\n"
    )
    assert not list(tmp_path.rglob("evil.txt"))
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]


FONTS = 7


def png(value: int) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(np.full((28, 28), value, dtype=np.uint8), mode="L").save(stream, "PNG")
    return stream.getvalue()


def notmnist_archive() -> bytes:
    """notMNIST_small's layout: a folder per letter, one PNG per font (the same file names in
    every folder), pixels font * 20 + letter; plus one unreadable file, as in the real one."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))

        for letter, folder in enumerate("ABCDEFGHIJ"):
            directory = tarfile.TarInfo(f"notMNIST_small/{folder}")
            directory.type = tarfile.DIRTYPE
            tar.addfile(directory)
            for font in range(FONTS):
                add(f"notMNIST_small/{folder}/Rm9udC{font}.png", png(font * 20 + letter))
        add("notMNIST_small/C/RnJlaWdodERpc3BCb29rSXRhbGljLnR0Zg==.png", b"")
    return stream.getvalue()


def test_notmnist_pngs_become_the_npz_with_fonts_held_out(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    serve(monkeypatch, server, "notmnist", {"notMNIST_small.tar.gz": notmnist_archive()})
    lines = fetch("notmnist")
    assert (
        f"notmnist: wrote {cache / 'notmnist' / 'notmnist.npz'}: 60 train and 10 test images"
        " (fonts held out, not a standard split), skipped 1 unreadable:"
        " notMNIST_small/C/RnJlaWdodERpc3BCb29rSXRhbGljLnR0Zg==.png"
    ) in lines
    assert [p.name for p in (cache / "notmnist").iterdir()] == ["notmnist.npz"]
    with np.load(cache / "notmnist" / "notmnist.npz") as npz:
        x_train, y_train, x_test, y_test = (
            npz[k] for k in ("x_train", "y_train", "x_test", "y_test")
        )
    np.testing.assert_array_equal(x_train[:, 0, 0] % 20, y_train)
    np.testing.assert_array_equal(x_test[:, 0, 0] % 20, y_test)
    train_fonts, test_fonts = set(x_train[:, 0, 0] // 20), set(x_test[:, 0, 0] // 20)
    assert len(test_fonts) == FONTS // 7 and not train_fonts & test_fonts
    assert sorted(y_test.tolist()) == list(range(10))  # every letter of the held-out font
    data = load_dataset("notmnist", val_fraction=0.5)
    assert len(data.y_test) == 10


def test_missing_data_error_names_the_fetch_command(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(MissingDataError) as info:
        load_dataset("kmnist")
    message = str(info.value)
    assert f"data directory {cache / 'kmnist'} for dataset 'kmnist' does not exist" in message
    assert message.endswith("or download it with: python -m sweeper.data fetch kmnist")
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    with pytest.raises(MissingDataError) as info:
        load_dataset("cifar10", elsewhere)
    assert str(info.value).endswith(f"python -m sweeper.data fetch cifar10 --dir {elsewhere}")
    assert "\n" not in str(info.value)


def test_the_fetch_command_names_this_python_where_the_shell_would_not_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make runs the venv's Python without putting the venv on PATH.
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shlex.split(fetch_hint("mnist", tmp_path / "my data")) == [
        sys.executable, "-m", "sweeper.data", "fetch", "mnist", "--dir", str(tmp_path / "my data")
    ]  # fmt: skip


def test_default_data_dir_prefers_a_system_copy_and_follows_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    debian = tmp_path / "usr-share-fashion-mnist"
    monkeypatch.setitem(locations.SYSTEM_COPIES, "fashion_mnist", debian)
    assert locations.default_data_dir("fashion_mnist") == cache / "fashion_mnist"
    debian.mkdir()
    for name, data in mnist_files().items():
        (debian / name).write_bytes(data)  # Debian recompressed them: other bytes, same arrays
    assert locations.default_data_dir("fashion_mnist") == debian
    assert fetch("fashion_mnist") == [f"fashion_mnist: already in {debian}"]
    # Through a link to it, as Debian's: its files are not checked against the downloads'.
    (tmp_path / "fm").symlink_to(debian)
    assert fetch("fashion_mnist", tmp_path / "fm") == [
        f"fashion_mnist: already in {tmp_path / 'fm'}"
    ]
    assert locations.default_data_dir("mnist") == cache / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec says: ignore it
    assert locations.default_data_dir("mnist") == Path.home() / ".cache" / "sweeper" / "mnist"


def test_progress_shows_size_and_speed_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for out, shown in ((Terminal(), True), (io.StringIO(), False)):
        progress = Progress("mnist: file.gz", 4 * 2**20, 0, out)
        progress.last -= 1  # due for a redraw
        progress.update(2**20)
        progress.close()
        text = out.getvalue()
        assert ("mnist: file.gz  1.0 MiB / 4.0 MiB  " in text and "MiB/s" in text) is shown
        assert (text == "") is not shown


def test_table_has_every_dataset_and_well_formed_checksums() -> None:
    assert set(SOURCES) == {name for name, spec in DATASETS.items() if spec.needs_data_dir}
    for name, source in SOURCES.items():
        assert source.bases and source.files and source.ready, name
        for base in source.bases:
            assert base.startswith(("http://", "https://")) and base.endswith("/"), base
        for file in source.files:
            algorithm, digest = file.checksum.split(":")
            assert len(digest) == HASH_LENGTHS[algorithm], (name, file.name)
            int(digest, 16)
            assert file.size is None or file.size > 0
    assert [f.name for f in SOURCES["mnist"].files] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


@needs_shared_mnist("SHA256SUMS", *IDX_NAMES)
def test_mnist_table_matches_the_official_files() -> None:
    sums = dict(
        reversed(line.split()) for line in (SHARED_MNIST / "SHA256SUMS").read_text().splitlines()
    )
    for file in SOURCES["mnist"].files:
        data = (SHARED_MNIST / file.name).read_bytes()
        assert file.checksum == sha256(data) == f"sha256:{sums[file.name]}"
        assert file.size == len(data)


@needs_shared_mnist(*IDX_NAMES)
def test_real_mnist_table_through_a_mirror_of_the_official_files(
    server: FileServer, cache: Path
) -> None:
    for file in SOURCES["mnist"].files:
        server.files[f"/mnist/{file.name}"] = (SHARED_MNIST / file.name).read_bytes()
    lines = fetch("mnist", mirror=server.url)
    assert lines[0] == "mnist: train-images-idx3-ubyte.gz (9.5 MiB) sha256 verified"
    data = load_dataset("mnist", max_train_samples=1000)
    assert data.x_test.shape == (10_000, 784)


def test_two_fetches_into_one_directory_at_once_both_end_with_the_data(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    # The server pauses halfway through each file: the second fetch starts while the first
    # holds half a file, waits for it, and finds the data there.
    files = mnist_files(n_train=500)
    serve(monkeypatch, server, "mnist", files)
    server.pause = 0.3
    directory = cache / "mnist"
    results: dict[str, list[str] | Exception] = {}

    def first() -> None:
        try:
            results["first"] = fetch("mnist")
        except Exception as error:  # reported by the asserts below
            results["first"] = error

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 30
    while not (directory / f"{IDX_NAMES[0]}.part").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    results["second"] = fetch("mnist")
    thread.join()
    assert results["first"] == [
        *(f"mnist: {n} ({fetch_module._mib(len(files[n]))}) sha256 verified" for n in IDX_NAMES),
        f"mnist: ready in {directory}",
    ]
    assert results["second"] == [f"mnist: already in {directory}, 4 file(s) verified"]
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


def test_a_part_file_that_is_no_prefix_of_the_file_is_fetched_again_from_its_start(
    server: FileServer, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    files = mnist_files()
    serve(monkeypatch, server, "mnist", files)
    images = IDX_NAMES[0]
    directory = cache / "mnist"
    directory.mkdir(parents=True)
    (directory / f"{images}.part").write_bytes(bytes(100))  # left by something else
    fetch("mnist")
    assert (directory / images).read_bytes() == files[images]
    asked = [wanted for path, wanted in server.requests if path == f"/mnist/{images}"]
    assert asked == ["bytes=100-", None]


def test_fetch_into_a_file_says_it_is_one(tmp_path: Path) -> None:
    archive = tmp_path / "notmnist.npz"
    archive.write_bytes(b"")
    with pytest.raises(FetchError, match=f"^{archive} is a file: fetch into a directory"):
        fetch("notmnist", archive)


@pytest.mark.parametrize(
    ("args", "command"),
    [(["mnist", "--dir", "my data"], "fetch mnist --dir 'my data'"), (["--help"], "fetch --help")],
)
def test_the_fetch_module_run_as_a_script_names_the_command_and_does_nothing(
    tmp_path: Path, args: list[str], command: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.data.fetch", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    # That line alone: no warning of runpy's that the module was imported before it ran.
    assert proc.stderr == (
        f"error: this module is not the command; run: python -m sweeper.data {command}\n"
    )
    assert list(tmp_path.iterdir()) == []
