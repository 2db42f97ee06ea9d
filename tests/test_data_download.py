"""``semcorr data``: downloads from a real HTTP server on 127.0.0.1 that serves small archives built
here in each dataset's real layout. A cut connection resumed with a Range request, checksums (the
publisher's, and the first download's in the lock file), damaged and unsafe archives, a full disk
(RLIMIT_FSIZE in a subprocess), bad input; and each dataset's preparation step."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from semcorr.data.catalog import DATASETS, Count, Load
from semcorr.data.fetch import dataset_path

# --- the server --------------------------------------------------------------------------------


class FileServer:
    """Serves ``files`` (``/<dataset>/<name>`` -> bytes) with Range and HEAD; ``cut_once[path] = n``
    closes that file's next GET after n bytes. ``requests`` logs (method, path, Range header)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                path = urllib.parse.unquote(self.path)
                server.requests.append((self.command, path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and int(match.group(1)) < len(data):
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                cut = server.cut_once.pop(path, None)
                self.wfile.write(data[start:cut] if cut is not None else data[start:])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, dataset: str, name: str, data: bytes) -> str:
        self.files[f"/{dataset}/{name}"] = data
        return f"/{dataset}/{name}"

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests of ``path``, in order."""
        return [header for method, requested, header in self.requests if method == "GET" and requested == path]

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SEMCORR_OFFLINE", raising=False)
    with FileServer() as running:
        monkeypatch.setenv("SEMCORR_DATA_MIRROR", running.url)
        yield running


def fake_catalog(monkeypatch, name: str, **changes) -> None:
    """The catalog entry of ``name`` with the counts (and checksums) of a tiny fake."""
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], **changes))


# --- tiny datasets in their real layouts --------------------------------------------------------


def write_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def spair_tree(folder: Path, extra: bytes = b"") -> Path:
    """SPair-71k's layout: 2 categories x 2 images, one pair per category and split."""
    base = folder / "SPair-71k"
    (base / "README").parent.mkdir(parents=True, exist_ok=True)
    (base / "README").write_bytes(b"SPair-71k (fake)\n" + extra)
    names = {"aeroplane": ("2008_000001", "2008_000002"), "dog": ("2009_000003", "2009_000004")}
    for index, (category, images) in enumerate(names.items()):
        for seed, image in enumerate(images):
            write_image(base / "JPEGImages" / category / f"{image}.jpg", seed=seed + 2 * index)
            write_json(base / "ImageAnnotation" / category / f"{image}.json", {"filename": f"{image}.jpg"})
    for split in ("trn", "val", "test"):
        lines = []
        for index, (category, (source, target)) in enumerate(names.items()):
            pair = f"{index:06d}-{source}-{target}:{category}"
            lines.append(pair)
            write_json(
                base / "PairAnnotation" / split / f"{pair}.json",
                {
                    "src_imname": f"{source}.jpg",
                    "trg_imname": f"{target}.jpg",
                    "category": category,
                    "src_kps": [[5, 5], [20, 10]],
                    "trg_kps": [[6, 6], [21, 12]],
                    "kps_ids": [0, 1],
                    "src_bndbox": [1, 1, 30, 20],
                    "trg_bndbox": [2, 2, 31, 22],
                    "src_imsize": [40, 30, 3],
                    "trg_imsize": [40, 30, 3],
                },
            )
        for layout in ("large", "small"):
            (base / "Layout" / layout).mkdir(parents=True, exist_ok=True)
            (base / "Layout" / layout / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


SPAIR_FAKE = dict(
    counts=(
        Count("SPair-71k/JPEGImages/*", 2, "folders"),
        Count("SPair-71k/JPEGImages/*/*.jpg", 4),
        Count("SPair-71k/PairAnnotation/test/*.json", 2),
        Count("SPair-71k/Layout/large/test.txt", 2, "lines"),
    ),
    loads=(Load("spair", "test", 2),),
)


def tar_gz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for entry in sorted(folder.iterdir()):
            archive.add(entry, arcname=entry.name)
    return buffer.getvalue()


def zipped(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def spair(tmp_path, server, monkeypatch):
    """The fake SPair-71k served at the mirror; returns (archive bytes, its path on the server, the root)."""
    fake_catalog(monkeypatch, "spair-71k", **SPAIR_FAKE)
    archive = tar_gz(spair_tree(tmp_path / "build"))
    return archive, server.serve("spair-71k", "SPair-71k.tar.gz", archive), tmp_path / "data"


def lock_of(root: Path, name: str) -> dict:
    return json.loads((root / f"{name}.lock.json").read_text())


def leftovers(root: Path) -> list[str]:
    """Hidden temporary folders and partial dataset folders under ``root``."""
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp")) if root.exists() else []


def one_line(result, *culprits: str) -> str:
    """The error: one line, the last on stderr (after the progress lines, such as the licence shown first)."""
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert result.returncode == 1 and message.startswith("semcorr: error: "), result.stderr
    assert result.stderr.count("semcorr: error") == 1 and "Traceback" not in result.stderr, result.stderr
    for culprit in culprits:
        assert culprit in message, message
    return message


# --- listing, downloading, verifying -------------------------------------------------------------


def test_list_names_every_dataset_with_size_and_licence(cli, tmp_path):
    result = cli("data", "list", "--root", tmp_path)
    assert result.returncode == 0, result.stderr
    for name, dataset in DATASETS.items():
        assert re.search(rf"^{re.escape(name)} .*\[absent\]$", result.stdout, re.M), name
        assert f"licence: {dataset.licence}" in result.stdout and f"size: {dataset.size}" in result.stdout


def test_download_verify_and_rerun(cli, server, spair):
    archive, path, root = spair
    result = cli("data", "download", "spair-71k", "--root", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(root / "spair-71k" / "SPair-71k") == str(dataset_path("spair", root))
    plan = result.stderr.index("licence:")  # licence, size (asked from the server) and destination come first
    assert plan < result.stderr.index("extracting SPair-71k.tar.gz")
    assert f"size:        {len(archive) / 1000:.1f} KB in 1 file(s)" in result.stderr
    assert f"destination: {root / 'spair-71k'}" in result.stderr and "none stated" in result.stderr
    assert [m for m, p, _ in server.requests if p == path] == ["HEAD", "GET"]
    lock = lock_of(root, "spair-71k")
    entry = lock["files"]["SPair-71k.tar.gz"]
    assert entry["sha256"] == sha256(archive) and entry["bytes"] == len(archive) and entry["path"] is None
    assert entry["checked"] == "recorded at this first download"
    assert lock["counts"]["SPair-71k/JPEGImages/*/*.jpg"] == 4
    assert sorted(p.name for p in root.iterdir()) == ["spair-71k", "spair-71k.lock.json"]  # archive deleted

    from semcorr.data import load_spair

    assert [p.category for p in load_spair(dataset_path("spair-71k", root), "test")] == ["aeroplane", "dog"]
    verified = cli("data", "verify", "spair", "--root", root, "--load")
    assert verified.returncode == 0, verified.stderr
    assert "ok    spair test: the loader reads 2 pairs" in verified.stdout
    assert "ok    SPair-71k/JPEGImages/*/*.jpg: 4 files (the catalog's figure)" in verified.stdout

    again = cli("data", "download", "spair-71k", "--root", root)
    assert again.returncode == 0 and "already in" in again.stderr and server.gets(path) == [None]

    next(iter((root / "spair-71k" / "SPair-71k" / "PairAnnotation" / "test").glob("*.json"))).unlink()
    broken = cli("data", "verify", "spair-71k", "--root", root)
    one_line(broken, "SPair-71k/PairAnnotation/test/*.json: 1 file, expected 2", str(root / "spair-71k"))
    assert "FAIL  SPair-71k/PairAnnotation/test/*.json" in broken.stdout


def test_a_cut_connection_resumes_with_a_range_request(cli, server, spair):
    archive, path, root = spair
    server.cut_once[path] = len(archive) // 2
    result = cli("data", "download", "spair-71k", "--root", root, "--no-progress", "--keep-archives")
    assert result.returncode == 0, result.stderr
    assert server.gets(path) == [None, f"bytes={len(archive) // 2}-"]
    assert lock_of(root, "spair-71k")["files"]["SPair-71k.tar.gz"]["sha256"] == sha256(archive)  # whole
    assert (dataset_path("spair-71k", root) / "PairAnnotation" / "test").is_dir()
    kept = root / ".downloads" / "spair-71k" / "SPair-71k.tar.gz"
    assert kept.read_bytes() == archive and list(kept.parent.iterdir()) == [kept]
    assert "ok    1 kept file(s): SHA-256 as recorded" in cli("data", "verify", "spair-71k", "--root", root).stdout
    kept.write_bytes(archive[:-1] + b"!")
    one_line(
        cli("data", "verify", "spair-71k", "--root", root),
        ".downloads/spair-71k/SPair-71k.tar.gz: its SHA-256 differs from the one recorded at download",
    )


def test_dry_run_shows_the_plan_and_downloads_nothing(cli, server, spair):
    _, path, root = spair
    result = cli("data", "download", "spair-71k", "--root", root, "--dry-run")
    assert result.returncode == 0 and "licence:" in result.stderr and "size:" in result.stderr
    assert server.gets(path) == [] and not (root / "spair-71k").exists()


def test_a_later_download_must_match_the_first(cli, server, spair, tmp_path):
    _, path, root = spair
    assert cli("data", "download", "spair-71k", "--root", root, "--no-progress").returncode == 0
    shutil.rmtree(root / "spair-71k")
    server.files[path] = tar_gz(spair_tree(tmp_path / "changed", extra=b"a changed file\n"))
    result = cli("data", "download", "spair-71k", "--root", root, "--no-progress")
    one_line(result, "differs from the first download's, recorded in", "spair-71k.lock.json", "deleted")
    assert not (root / "spair-71k").exists() and leftovers(root) == []
    assert not [p for p in (root / ".downloads").rglob("*") if p.is_file()]  # no .part kept: it was whole, and wrong


@pytest.mark.parametrize("damage", ["truncated", "web page"])
def test_a_damaged_archive_is_refused_deleted_and_fetched_again(cli, server, spair, damage):
    archive, path, root = spair
    server.files[path] = archive[: len(archive) // 2] if damage == "truncated" else b"<!DOCTYPE html><p>quota</p>"
    result = cli("data", "download", "spair-71k", "--root", root, "--no-progress")
    message = one_line(result, "SPair-71k.tar.gz", "the archive was deleted")
    assert ("the archive is damaged" if damage == "truncated" else "the server sent a web page") in message
    assert not (root / "spair-71k").exists() and leftovers(root) == [] and not (root / "spair-71k.lock.json").exists()
    server.files[path] = archive
    assert cli("data", "download", "spair-71k", "--root", root, "--no-progress").returncode == 0
    assert lock_of(root, "spair-71k")["files"]["SPair-71k.tar.gz"]["sha256"] == sha256(archive)


@pytest.mark.parametrize("where", ["download", "extraction"])
def test_a_full_disk_stops_with_one_line_and_leaves_nothing_half_written(cli, server, spair, tmp_path, where):
    """RLIMIT_FSIZE makes every write past the limit fail (EFBIG), as a full disk does (ENOSPC)."""
    _, path, root = spair
    build = spair_tree(tmp_path / "big")
    big = (
        np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
        if where == "download"
        else bytes(2_000_000)
    )  # incompressible: the download hits the limit; zeros: only the extracted file does
    (build / "SPair-71k" / "devkit.bin").write_bytes(big)
    archive = server.files[path] = tar_gz(build)
    limit = 100_000 if where == "download" else 1_000_000
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "SEMCORR_OFFLINE")}
    env.update(PYTHONPATH=str(REPO / "src"), SEMCORR_DATA_MIRROR=server.url)
    result = subprocess.run(
        [sys.executable, "-m", "semcorr.cli", "data", "download", "spair-71k", "--root", str(root), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    one_line(result, "cannot write it (the file is too large for this file system or limit)")
    assert not (root / "spair-71k").exists() and leftovers(root) == [] and not (root / "spair-71k.lock.json").exists()
    downloads = root / ".downloads" / "spair-71k"
    if where == "download":  # what arrived is kept, and the next run asks for the rest
        kept = (downloads / "SPair-71k.tar.gz.part").stat().st_size
        assert 0 < kept <= limit and "kept there: rerun to resume" in result.stderr
    else:  # the archive is whole and kept; the next run extracts it without downloading
        kept = (downloads / "SPair-71k.tar.gz").stat().st_size
        assert kept == len(archive)
    requests = len(server.gets(path))
    assert cli("data", "download", "spair-71k", "--root", root, "--no-progress").returncode == 0
    assert server.gets(path)[requests:] == ([f"bytes={kept}-"] if where == "download" else [])
    assert (root / "spair-71k" / "SPair-71k" / "devkit.bin").read_bytes() == big


def test_unsafe_members_are_refused_end_to_end(cli, server, tmp_path, monkeypatch):
    fake_catalog(monkeypatch, "pf-willow", counts=(), loads=())
    archive = zipped(willow_tree(tmp_path / "build"), extra={"../escape.txt": b"outside"})
    server.serve("pf-willow", "PF-dataset.zip", archive)
    server.serve("pf-willow", "test_pairs_pf.csv", b"imageA,imageB\n")
    root = tmp_path / "data"
    result = cli("data", "download", "pf-willow", "--root", root, "--no-progress")
    one_line(result, "PF-dataset.zip: member '../escape.txt' climbs out with '..'; refused", "the archive was deleted")
    assert not list(tmp_path.rglob("escape.txt")) and not (root / "pf-willow").exists() and leftovers(root) == []


def test_bad_input_is_one_line(cli, tmp_path, read_only, monkeypatch):
    one_line(cli("data", "download", "nonsense", "--root", tmp_path), "unknown dataset 'nonsense'", "spair-71k")
    one_line(cli("data", "verify", "spiar-71k", "--root", tmp_path), "did you mean spair-71k?")
    one_line(cli("data", "download", "spair-71k", "--root", read_only / "data"), str(read_only), "not writable")
    assert list(read_only.iterdir()) == []
    (tmp_path / "file").write_text("x")
    one_line(cli("data", "download", "spair-71k", "--root", tmp_path / "file"), "is a file")
    one_line(cli("data", "download", "co3d", "--root", tmp_path), "--categories")
    one_line(cli("data", "download", "spair-71k", "--root", tmp_path, "--categories", "apple"), "co3d")
    one_line(cli("data", "download", "spair-71k", "--root", tmp_path, "--mirror", "ftp://x"), "http(s)")
    one_line(cli("data", "verify", "spair-71k", "--root", tmp_path), "not found", "semcorr data download")
    (tmp_path / "spair-71k").mkdir()  # --root naming the dataset's own folder instead of the one that holds it
    one_line(
        cli("data", "verify", "spair-71k", "--root", tmp_path / "spair-71k"),
        "not found; --root is the folder that holds spair-71k/: did you mean --root " + str(tmp_path) + "?",
    )
    monkeypatch.setenv("SEMCORR_OFFLINE", "1")
    one_line(
        cli("data", "download", "spair-71k", "--root", tmp_path / "d"),
        "SEMCORR_OFFLINE is set",
        str(tmp_path / "d" / ".downloads" / "spair-71k" / "SPair-71k.tar.gz"),
    )


# --- safe extraction -----------------------------------------------------------------------------


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo("inside")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _zip_with(name: str, data: bytes = b"x", symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "archive, reason",
    [
        (lambda: _zip_with("../x.txt"), "climbs out with '..'"),
        (lambda: _zip_with("/abs/x.txt"), "has an absolute path"),
        (lambda: _zip_with("inside/link", b"../../x.txt", symlink=True), "is a link to '../../x.txt', outside"),
        (lambda: _tar_with(tarfile.TarInfo("inside/../../x.txt"), b"x"), "climbs out with '..'"),
        (lambda: _tar_with(tarfile.TarInfo("/abs/x.txt"), b"x"), "has an absolute path"),
        (lambda: _tar_with(_link("inside/link", "../../outside", tarfile.SYMTYPE)), "is a link to '../../outside'"),
        (lambda: _tar_with(_link("inside/link", "/etc/passwd", tarfile.SYMTYPE)), "is a link to '/etc/passwd'"),
        (lambda: _tar_with(_link("inside/hard", "../x.txt", tarfile.LNKTYPE)), "is a link to '../x.txt'"),
        (lambda: _tar_with(_link("inside/fifo", "", tarfile.FIFOTYPE)), "special file"),
    ],
    ids=[
        "zip-dotdot",
        "zip-absolute",
        "zip-symlink",
        "tar-dotdot",
        "tar-absolute",
        "tar-symlink",
        "tar-absolute-symlink",
        "tar-hardlink",
        "tar-fifo",
    ],
)
def test_members_that_escape_are_refused_before_anything_is_written(tmp_path, archive, reason):
    from semcorr.data.archives import ArchiveError, extract_archive

    path = tmp_path / "a" / "archive.bin"
    path.parent.mkdir()
    path.write_bytes(archive())
    folder = tmp_path / "a" / "b" / "target"
    folder.mkdir(parents=True)
    with pytest.raises(ArchiveError, match=re.escape(reason)):
        extract_archive(path, folder)
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.rglob("*")) == [
        "a",
        "archive.bin",
        "b",
        "target",
    ]


def test_links_inside_the_folder_are_kept(tmp_path):
    from semcorr.data.archives import extract_archive

    path = tmp_path / "archive.tar"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = tarfile.TarInfo("inside/data.txt")
        data.size = 2
        archive.addfile(data, io.BytesIO(b"ok"))
        archive.addfile(_link("inside/alias.txt", "data.txt", tarfile.SYMTYPE))
        archive.addfile(_link("__MACOSX/inside/._data.txt", "", tarfile.REGTYPE))
    path.write_bytes(buffer.getvalue())
    assert extract_archive(path, tmp_path) == 1
    assert (tmp_path / "inside" / "alias.txt").read_text() == "ok" and not (tmp_path / "__MACOSX").exists()


# --- a zip dataset with a pair list, and an unverified MD5 ----------------------------------------


def willow_tree(folder: Path) -> Path:
    """PF-WILLOW's layout: one subclass folder of 3 images with their .mat keypoints."""
    import scipy.io

    for index in range(3):
        image = folder / "PF-dataset" / "car(G)" / f"Cars_00{index}a.png"
        write_image(image, seed=index)
        points = np.array([[5.0 + index, 20, 30], [6.0, 12 + index, 25]])  # x row, y row
        scipy.io.savemat(image.with_suffix(".mat"), {"pts_coord": points})
    (folder / "PF-dataset" / ".DS_Store").write_bytes(b"junk")
    return folder


def test_zip_dataset_with_its_pair_list(cli, server, tmp_path, monkeypatch):
    fake_catalog(
        monkeypatch,
        "pf-willow",
        counts=(
            Count("PF-dataset/*", 1, "folders"),
            Count("PF-dataset/*/*.png", 3),
            Count("PF-dataset/test_pairs_pf.csv", None, "rows"),
        ),
        loads=(Load("pf-willow", "test", 6),),
    )
    archive = zipped(willow_tree(tmp_path / "build"), extra={"__MACOSX/PF-dataset/._Cars_000a.png": b"junk"})
    server.serve("pf-willow", "PF-dataset.zip", archive)
    pairs_csv = b"imageA,imageB\n" + b"".join(b"PF-dataset/car(G)/a.png,PF-dataset/car(G)/b.png\n" for _ in range(6))
    server.serve("pf-willow", "test_pairs_pf.csv", pairs_csv)
    root = tmp_path / "data"
    result = cli("data", "download", "pf-willow", "--root", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    folder = root / "pf-willow" / "PF-dataset"
    assert result.stdout.strip() == str(folder)
    assert (folder / "test_pairs_pf.csv").read_bytes() == pairs_csv
    assert not (root / "pf-willow" / "__MACOSX").exists() and not (folder / ".DS_Store").exists()
    lock = lock_of(root, "pf-willow")
    assert lock["counts"]["PF-dataset/test_pairs_pf.csv"] == 6
    assert lock["files"]["test_pairs_pf.csv"] == {
        "url": f"{server.url}/pf-willow/test_pairs_pf.csv",
        "bytes": len(pairs_csv),
        "sha256": sha256(pairs_csv),
        "checked": "recorded at this first download",
        "path": "pf-willow/PF-dataset/test_pairs_pf.csv",
    }
    verified = cli("data", "verify", "pf-willow", "--root", root, "--load")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok    1 kept file(s): SHA-256 as recorded at download" in verified.stdout
    assert "ok    PF-dataset/test_pairs_pf.csv: 6 rows (recorded at the first download)" in verified.stdout
    assert "ok    pf-willow test: the loader reads 6 pairs" in verified.stdout
    (folder / "test_pairs_pf.csv").write_bytes(pairs_csv + b"x,y\n")
    one_line(
        cli("data", "verify", "pf-willow", "--root", root),
        "pf-willow/PF-dataset/test_pairs_pf.csv: its SHA-256 differs from the one recorded at download",
        "(and 1 more check(s) failed)",
    )


def pascal_tree(folder: Path) -> Path:
    """PF-PASCAL's layout: 3 aeroplane images with .mat keypoints and boxes."""
    import scipy.io

    base = folder / "PF-dataset-PASCAL"
    for index in range(3):
        write_image(base / "JPEGImages" / f"2009_00000{index}.jpg", seed=index)
        (base / "Annotations" / "aeroplane").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(
            base / "Annotations" / "aeroplane" / f"2009_00000{index}.mat",
            {"kps": np.array([[5.0, 6], [20, 12 + index]]), "bbox": np.array([[1, 2, 30, 25]])},
        )
    return folder


def test_pair_lists_go_beside_the_images_and_a_web_page_is_not_a_pair_list(cli, server, tmp_path, monkeypatch):
    fake_catalog(
        monkeypatch,
        "pf-pascal",
        counts=(
            Count("PF-dataset-PASCAL/Annotations/*", 1, "folders"),
            Count("PF-dataset-PASCAL/test_pairs_pf_pascal.csv", 2, "rows"),
        ),
        loads=(Load("pf-pascal", "test", 2),),
    )
    server.serve("pf-pascal", "PF-dataset-PASCAL.zip", zipped(pascal_tree(tmp_path / "build")))
    header = b"source_image,target_image,class,XA,YA,XB,YB\n"
    row = (
        b"PF-dataset-PASCAL/JPEGImages/2009_00000%d.jpg,PF-dataset-PASCAL/JPEGImages/2009_00000%d.jpg,"
        b"1,5;20,6;12,5;20,6;13\n"
    )
    server.serve("pf-pascal", "test_pairs_pf_pascal.csv", header + row % (0, 1) + row % (1, 2))
    server.serve("pf-pascal", "val_pairs_pf_pascal.csv", header + row % (2, 0))
    server.serve("pf-pascal", "trn_pairs_pf_pascal.csv", b"<!DOCTYPE html><title>Google Drive - quota</title>")
    root = tmp_path / "data"
    result = cli("data", "download", "pf-pascal", "--root", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "optional file trn_pairs_pf_pascal.csv skipped" in result.stderr and "sent a web page" in result.stderr
    folder = dataset_path("pf-pascal", root)
    assert sorted(p.name for p in folder.iterdir()) == [
        "Annotations",
        "JPEGImages",
        "test_pairs_pf_pascal.csv",
        "val_pairs_pf_pascal.csv",
    ]
    assert "trn_pairs_pf_pascal.csv" not in lock_of(root, "pf-pascal")["files"]
    verified = cli("data", "verify", "pf-pascal", "--root", root, "--load")
    assert verified.returncode == 0 and "ok    pf-pascal test: the loader reads 2 pairs" in verified.stdout

    shutil.rmtree(root)
    server.files["/pf-pascal/test_pairs_pf_pascal.csv"] = b"<html><body>Sign in</body></html>"
    one_line(
        cli("data", "download", "pf-pascal", "--root", root, "--no-progress"),
        "sent a web page instead of test_pairs_pf_pascal.csv",
    )
    assert not (root / "pf-pascal").exists()


def cub_tree(folder: Path) -> Path:
    """CUB-200-2011's official layout: 2 classes x 3 images (2 test, 1 train), 15 parts each."""
    base = folder / "CUB_200_2011"
    rows: dict[str, list[str]] = {"images": [], "labels": [], "split": [], "boxes": [], "parts": []}
    for image_id in range(1, 7):
        label = 1 + (image_id - 1) // 3
        name = f"00{label}.Bird_{label}/Bird_{label}_{image_id}.jpg"
        write_image(base / "images" / name, seed=image_id)
        rows["images"].append(f"{image_id} {name}")
        rows["labels"].append(f"{image_id} {label}")
        rows["split"].append(f"{image_id} {int(image_id % 3 == 0)}")
        rows["boxes"].append(f"{image_id} 1.0 2.0 30.0 20.0")
        rows["parts"] += [f"{image_id} {part} {part + 2}.0 {part}.0 {int(part < 5)}" for part in range(1, 16)]
    for name, key in (
        ("images.txt", "images"),
        ("image_class_labels.txt", "labels"),
        ("train_test_split.txt", "split"),
        ("bounding_boxes.txt", "boxes"),
        ("parts/part_locs.txt", "parts"),
    ):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text("\n".join(rows[key]) + "\n")
    (folder / "attributes.txt").write_text("1 has_bill_shape::curved\n")
    return folder


def test_an_unverified_md5_that_differs_is_a_warning_and_the_sha256_is_recorded(cli, server, tmp_path, monkeypatch):
    fake_catalog(
        monkeypatch,
        "cub-200-2011",
        counts=(Count("CUB_200_2011/images/*/*.jpg", 6), Count("CUB_200_2011/parts/part_locs.txt", 90, "lines")),
        loads=(Load("cub", "test", 2),),
    )
    archive = tar_gz(cub_tree(tmp_path / "build"))
    server.serve("cub-200-2011", "CUB_200_2011.tgz", archive)
    root = tmp_path / "data"
    result = cli("data", "download", "cub", "--root", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert f"has md5 {hashlib.md5(archive).hexdigest()}, not the unverified 97eceeb1" in result.stderr
    assert lock_of(root, "cub-200-2011")["files"]["CUB_200_2011.tgz"]["sha256"] == sha256(archive)
    assert (root / "cub-200-2011" / "attributes.txt").is_file()
    verified = cli("data", "verify", "cub-200-2011", "--root", root, "--load")
    assert verified.returncode == 0 and "ok    cub test: the loader reads 2 pairs" in verified.stdout


# --- CO3D: categories, the publisher's SHA-256 -------------------------------------------------------


def co3d_zips(tmp_path: Path, category: str) -> tuple[bytes, bytes]:
    """A category in two zips as CO3D ships it: annotations in the first, a sequence's frames in the second."""
    frames = [
        {
            "sequence_name": "seq1",
            "frame_number": n,
            "image": {"path": f"{category}/seq1/images/frame00000{n}.jpg", "size": [30, 40]},
        }
        for n in (1, 2)
    ]
    first, second = tmp_path / f"{category}-0", tmp_path / f"{category}-1"
    (first / category / "set_lists").mkdir(parents=True)
    with gzip.open(first / category / "frame_annotations.jgz", "wt") as handle:
        json.dump(frames, handle)
    with gzip.open(first / category / "sequence_annotations.jgz", "wt") as handle:
        json.dump([{"sequence_name": "seq1", "category": category}], handle)
    write_json(first / category / "set_lists" / "set_lists_manyview_dev_0.json", {"train": []})
    for n in (1, 2):
        write_image(second / category / "seq1" / "images" / f"frame00000{n}.jpg", seed=n)
    return zipped(first), zipped(second)


@pytest.fixture
def co3d(server, tmp_path, monkeypatch):
    """Two categories (apple, teddybear) served with CO3D's links.json and co3d_sha256.json; the
    catalog holds the fakes' SHA-256 as it holds the real files'."""
    base = "https://dl.fbaipublicfiles.com/co3dv2_231130"
    zips = {f"{c}_00{i}.zip": data for c in ("apple", "teddybear") for i, data in enumerate(co3d_zips(tmp_path, c))}
    links = {
        "full": {
            "apple": [f"{base}/apple_000.zip", f"{base}/apple_001.zip"],
            "teddybear": [f"{base}/teddybear_000.zip", f"{base}/teddybear_001.zip"],
            "METADATA": [f"{base}/category_to_subset_name_list.json"],
        },
        "singlesequence": {},
    }
    sums = {"full": {name: sha256(data) for name, data in zips.items()}, "singlesequence": {}}

    def publish(sums: dict) -> None:
        files = []
        published = (json.dumps(links).encode(), json.dumps(sums).encode())
        for file, data in zip(DATASETS["co3d"].files, published, strict=True):
            server.serve("co3d", file.name, data)
            files.append(dataclasses.replace(file, checksum=f"sha256:{sha256(data)}", size=len(data)))
        fake_catalog(monkeypatch, "co3d", files=tuple(files))

    for name, data in zips.items():
        server.serve("co3d", name, data)
    server.serve("co3d", "category_to_subset_name_list.json", b'{"apple": ["manyview_dev_0"]}')
    publish(sums)
    return publish, sums


def test_co3d_downloads_chosen_categories_checked_against_the_publishers_sha256(cli, server, co3d, tmp_path):
    publish, sums = co3d
    root = tmp_path / "data"
    one_line(
        cli("data", "download", "co3d", "--root", root, "--categories", "apple,pear"),
        "no category 'pear'",
        "apple, teddybear",
    )
    result = cli("data", "download", "co3d", "--root", root, "--categories", "apple", "--no-progress")
    assert result.returncode == 0, result.stderr
    folder = root / "co3d"
    assert sorted(p.name for p in folder.iterdir()) == ["apple", "category_to_subset_name_list.json"]
    assert (folder / "apple" / "seq1" / "images" / "frame000002.jpg").is_file()
    lock = lock_of(root, "co3d")
    assert lock["categories"] == ["apple"] and lock["files"]["apple_001.zip"]["checked"] == "the publisher's"
    assert lock["counts"]["apple/*/images/*.jpg"] == 2
    verified = cli("data", "verify", "co3d", "--root", root, "--load")
    assert verified.returncode == 0 and "ok    apple: all 2 annotated frames have their image" in verified.stdout

    publish({"full": {**sums["full"], "teddybear_001.zip": "0" * 64}})
    result = cli("data", "download", "co3d", "--root", root, "--categories", "apple,teddybear", "--no-progress")
    one_line(
        result,
        "teddybear_001.zip: the downloaded file's SHA-256",
        "differs from the publisher's (0000",
        "it was deleted",
    )
    assert not (folder / "teddybear").exists() and leftovers(folder) == []
    assert not (root / ".downloads" / "co3d" / "teddybear_001.zip.part").exists()
    assert lock_of(root, "co3d")["categories"] == ["apple"]
    publish(sums)
    assert cli("data", "download", "co3d", "--root", root, "--categories", "all", "--no-progress").returncode == 0
    assert lock_of(root, "co3d")["categories"] == ["apple", "teddybear"]
    assert server.gets("/co3d/apple_000.zip") == [None]  # apple was not fetched again


# --- preparation steps: AP-10K pair sets, DistillDIFT's COCO subset ----------------------------------


def ap10k_tree(folder: Path) -> Path:
    """AP-10K's official layout: 2 families, 3 species, 14 images; image 7 holds two animals, image 3 is
    on the crowd list; annotation ids differ from image ids and run in another order (as in AP-10K)."""
    base = folder / "ap-10k"
    categories = [
        {"id": 1, "name": "cat", "supercategory": "Felidae"},
        {"id": 2, "name": "lion", "supercategory": "Felidae"},
        {"id": 3, "name": "dog", "supercategory": "Canidae"},
    ]
    images, annotations = [], []
    for image_id in range(1, 15):
        category = 1 if image_id <= 6 else 2 if image_id <= 10 else 3
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 40, "height": 30})
        write_image(base / "data" / f"{image_id:012d}.jpg", seed=image_id)
        for extra in range(2 if image_id == 7 else 1):
            keypoints = [v for k in range(17) for v in (1 + k + extra, 2 + k, 2)]
            annotations.append(
                {
                    "id": 2000 - 7 * len(annotations) % 50,
                    "image_id": image_id,
                    "category_id": category,
                    "keypoints": keypoints,
                    "num_keypoints": 17,
                    "bbox": [1, 2, 30, 20],
                }
            )
    for split in ("train", "val", "test"):
        for number in (1, 2, 3):
            chosen = annotations if (split, number) == ("train", 1) else []
            write_json(
                base / "annotations" / f"ap10k-{split}-split{number}.json",
                {"images": images, "annotations": chosen, "categories": categories},
            )
    return folder


def test_ap10k_is_prepared_into_geoaware_layout_with_our_seeded_pairs(cli, server, tmp_path, monkeypatch):
    from semcorr.data import load_ap10k

    official = ap10k_tree(tmp_path / "build")
    crowd = b"000000000003\n"
    archive = zipped(official)
    server.serve("ap-10k", "ap-10k.zip", archive)
    server.serve("ap-10k", "ap-10k_is_crowd.txt", crowd)
    zip_file, crowd_file = DATASETS["ap-10k"].files
    fake_catalog(
        monkeypatch,
        "ap-10k",
        files=(zip_file, dataclasses.replace(crowd_file, size=len(crowd), checksum=f"sha256:{sha256(crowd)}")),
    )
    root = tmp_path / "data"
    result = cli("data", "download", "ap-10k", "--root", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    folder = dataset_path("ap-10k", root)
    assert sorted(p.name for p in folder.iterdir()) == [
        "ImageAnnotation",
        "JPEGImages",
        "PairAnnotation",
        "annotations",
        "ap-10k_is_crowd.txt",
    ]
    assert len(list((folder / "JPEGImages").glob("*/*/*.jpg"))) == 14
    (tmp_path / "crowd.txt").write_bytes(crowd)
    # eligible: cat 5 (image 3 is crowd), lion 4 (image 7: its first animal), dog 4; all of them test animals
    expected = {
        ("intra-species", "test"): 10 + 6 + 6,
        ("cross-species", "test"): 5 * 4,
        ("cross-family", "test"): min(30, 9 * 4),
        ("intra-species", "trn"): 0,
    }
    seen = set()
    for (subset, split), count in expected.items():
        prepared = load_ap10k(folder, split, subset=subset)
        rebuilt = load_ap10k(official / "ap-10k", split, subset=subset, crowd_file=tmp_path / "crowd.txt")
        ids = {(p.source_image.stem, p.target_image.stem, p.category) for p in prepared}
        assert ids == {(p.source_image.stem, p.target_image.stem, p.category) for p in rebuilt}
        assert len(prepared) == len(ids) == count
        seen |= {image for pair in ids for image in pair[:2]}
    assert "000000000003" not in seen and "000000000007" in seen  # the crowd list names image ids
    lock = lock_of(root, "ap-10k")
    assert lock["counts"]["ap-10k/PairAnnotation/test_cross_family/*.json"] == 30
    verified = cli("data", "verify", "ap-10k", "--root", root, "--load")
    assert verified.returncode == 0 and "ok    ap10k-cross-family test: the loader reads 30 pairs" in verified.stdout


def test_coco_subset_is_distilldifts_rule_and_only_its_images_are_fetched(cli, server, tmp_path, monkeypatch):
    import torch
    from pycocotools.coco import COCO

    from semcorr.data import prepare

    monkeypatch.setattr(prepare, "COCO_SUBSET_SIZE", 5)
    fake_catalog(
        monkeypatch, "coco-distilldift", counts=(Count("train2017/*/*.jpg", 5), Count("subset.txt", 5, "lines"))
    )
    categories = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 7, "name": "traffic light", "supercategory": "outdoor"},
    ]
    images = [{"id": 100 + i, "file_name": f"{100 + i:012d}.jpg", "width": 40, "height": 30} for i in range(12)]
    annotations = [{"id": 1, "image_id": 100, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 5, 5], "area": 25}]
    for i in range(2, 12):  # image 100: crowd only; 101: none
        for k, category in enumerate((7, 1) if i % 3 else (1,)):
            annotations.append(
                {
                    "id": 10 * i + k,
                    "image_id": 100 + i,
                    "category_id": category,
                    "iscrowd": int(k == 0 and i == 5),
                    "bbox": [0, 0, 5, 5],
                    "area": 25,
                }
            )
    instances = json.dumps({"images": images, "annotations": annotations, "categories": categories}).encode()
    build = tmp_path / "build" / "annotations"
    build.mkdir(parents=True)
    (build / "instances_train2017.json").write_bytes(instances)
    (build / "captions_train2017.json").write_text("{}")
    server.serve("coco-distilldift", "annotations_trainval2017.zip", zipped(build.parent))
    for image in images:
        write_image(tmp_path / "img.jpg", seed=image["id"])
        server.serve("coco-distilldift", f"train2017/{image['file_name']}", (tmp_path / "img.jpg").read_bytes())

    coco = COCO(str(build / "instances_train2017.json"))  # DistillDIFT's rule, with the API it uses
    kept = []
    for image_id in coco.getImgIds():
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)) if a["iscrowd"] == 0]
        if anns:
            kept.append((coco.loadImgs(image_id)[0]["file_name"], coco.loadCats(anns[0]["category_id"])[0]["name"]))
    torch.manual_seed(42)
    expected = [f"train2017/{kept[i][1]}/{kept[i][0]}" for i in torch.randperm(len(kept))[:5].tolist()]

    root = tmp_path / "data"
    result = cli("data", "download", "coco", "--root", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    folder = root / "coco-distilldift"
    assert (folder / "subset.txt").read_text().splitlines() == expected
    assert sorted(str(p.relative_to(folder)) for p in (folder / "train2017").rglob("*.jpg")) == sorted(expected)
    assert not (folder / "annotations" / "captions_train2017.json").exists()
    fetched = {path.rsplit("/", 1)[1] for method, path, _ in server.requests if "/train2017/" in path}
    assert fetched == {line.rsplit("/", 1)[1] for line in expected}  # only the chosen images
    assert (
        lock_of(root, "coco-distilldift")["files"][f"train2017/{expected[0].rsplit('/', 1)[1]}"]["path"]
        == f"coco-distilldift/{expected[0]}"
    )
    assert cli("data", "verify", "coco-distilldift", "--root", root).returncode == 0


# --- the downloader's own checksum --------------------------------------------------------------


def test_download_file_checks_an_expected_sha256(server, tmp_path):
    from semcorr.download import download_file
    from semcorr.errors import DownloadError

    data = b"payload" * 1000
    server.serve("x", "file.bin", data)
    target = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="differs from the publisher's"):
        download_file(
            f"{server.url}/x/file.bin", target, progress=False, sha256="0" * 64, sha256_source="the publisher's"
        )
    assert list(tmp_path.iterdir()) == []  # nothing kept: no resume can mend whole, wrong bytes
    target.write_bytes(b"stale")
    with pytest.warns(UserWarning, match="differs from the expected one; deleted, downloading it again"):
        download_file(f"{server.url}/x/file.bin", target, progress=False, sha256=sha256(data))
    assert target.read_bytes() == data


def test_offline_asks_no_server_even_for_a_size(server, monkeypatch):
    from semcorr.download import remote_size

    path = server.serve("x", "file.bin", b"payload")
    assert remote_size(server.url + path) == 7  # asked with HEAD when online
    monkeypatch.setenv("SEMCORR_OFFLINE", "1")
    assert remote_size(server.url + path) is None
    assert [method for method, _, _ in server.requests] == ["HEAD"]  # the offline call sent nothing
