"""The authors' DistillDIFT checkpoints: exact conversion, refused files, the resumable download
from a real local HTTP server, the cache, and the default model."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import torch
from distilldift_official import official_forward, official_state_dict

from semcorr.cli import build_parser, main
from semcorr.download import download_file
from semcorr.errors import CheckpointError, DownloadError, WeightsUnavailableError
from semcorr.features import DEFAULT_MODEL, build_extractor
from semcorr.features.released.distilldift import convert_checkpoint
from semcorr.features.released.distilldift_checkpoint import convert_distilldift_state_dict
from semcorr.weights.releases import Release, released_file
from semcorr.weights.safe_pickle import read_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return official_state_dict(rank=8, seed=0)


@pytest.fixture(scope="module")
def ckpt(official, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "distilled_us.ckpt"
    torch.save(official, path)
    return path


class TestConversion:
    def test_converted_folder_equals_the_official_forward_at_434(self, official, ckpt, tmp_path, capsys):
        out = tmp_path / "converted"
        assert main(["convert-checkpoint", str(ckpt), "--out", str(out)]) == 0
        assert f"--weights {out}" in capsys.readouterr().out
        manifest = json.loads((out / "distilldift.json").read_text())
        assert manifest["rank"] == 8 and manifest["official_keys"] == len(official) == 8 + 12 * 18
        adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert (adapter["rank"], adapter["alpha"]) == (8, 8)  # alpha = r: the official update is unscaled
        assert (out / "backbone" / "model.safetensors").is_file() and (out / "backbone" / "config.json").is_file()

        extractor = build_extractor("distilldift-us", weights=str(out), device="cpu")
        assert extractor.merged and not extractor.random_weights and extractor.name == "distilldift-us"
        pixels = torch.rand(1, 3, 434, 434, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            ours = extractor(pixels)
        reference = official_forward(official, pixels)  # 31x31 grid: pos_embed interpolated from 37x37
        assert ours.shape == reference.shape == (1, 768, 31, 31)
        assert (ours - reference).abs().max() < TOLERANCE

    def test_checkpoint_file_directly_unmerged_and_merged(self, official, ckpt):
        extractor = build_extractor("distilldift-us", weights=str(ckpt), merge=False, input_size=56, device="cpu")
        pixels = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(4))
        reference = official_forward(official, pixels)
        without_lora = official_forward(official, pixels, lora=False)
        assert (reference - without_lora).abs().max() > 1e-2  # the LoRA matters in this test
        with torch.no_grad():
            assert (extractor(pixels) - reference).abs().max() < TOLERANCE
            extractor.merge()
            assert (extractor(pixels) - reference).abs().max() < TOLERANCE
        assert torch.equal(
            official["model.blocks.0.attn.qkv.qkv.weight"],
            official_state_dict(rank=8, seed=0)["model.blocks.0.attn.qkv.qkv.weight"],
        )  # input untouched

    def test_missing_or_extra_key_in_a_file_is_named(self, official, tmp_path):
        keys_only = {key: torch.zeros(1) for key in official}  # keys are checked before shapes: small files
        missing = dict(keys_only)
        del missing["model.blocks.7.attn.qkv.linear_b_v.weight"]
        torch.save(missing, tmp_path / "missing.ckpt")
        with pytest.raises(CheckpointError, match=re.escape("missing keys: model.blocks.7.attn.qkv.linear_b_v.weight")):
            convert_checkpoint(tmp_path / "missing.ckpt", tmp_path / "out")
        assert not (tmp_path / "out").exists()
        extra = dict(keys_only, **{"model.head.weight": torch.zeros(3)})
        torch.save(extra, tmp_path / "extra.ckpt")
        with pytest.raises(CheckpointError, match=re.escape("unknown keys: model.head.weight")):
            build_extractor("distilldift-us", weights=str(tmp_path / "extra.ckpt"))

    def test_wrong_shape_and_prefix_forms(self, official):
        no_prefix = {key[len("model.") :]: value for key, value in official.items()}
        del no_prefix["mask_token"]  # unused by features: allowed to be absent (zero)
        assert convert_distilldift_state_dict(no_prefix).rank == 8
        wrong = dict(official, **{"model.blocks.2.attn.qkv.qkv.weight": torch.zeros(2304, 767)})
        with pytest.raises(CheckpointError, match=re.escape("model.blocks.2.attn.qkv.qkv.weight (2304, 767)")):
            convert_distilldift_state_dict(wrong)
        mixed = dict(official, cls_token=torch.zeros(1, 1, 768))
        with pytest.raises(CheckpointError, match="mix"):
            convert_distilldift_state_dict(mixed)

    def test_a_pickle_that_would_run_code_is_refused(self, tmp_path):
        marker = tmp_path / "ran"

        class Payload:
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').close()",))

        torch.save({"model.cls_token": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.ckpt")
        with pytest.raises(CheckpointError, match="evil.ckpt: refused"):
            convert_checkpoint(tmp_path / "evil.ckpt", tmp_path / "out")
        with pytest.raises(CheckpointError, match="refused"):
            build_extractor("distilldift-us", weights=str(tmp_path / "evil.ckpt"))
        assert not marker.exists()
        torch.load(tmp_path / "evil.ckpt", weights_only=False)  # the file is live: unsafe loading runs it
        assert marker.exists()

    def test_lightning_wrapper_is_unwrapped(self, tmp_path):
        torch.save({"state_dict": {"model.cls_token": torch.ones(2)}, "epoch": 3}, tmp_path / "wrapped.ckpt")
        assert list(read_state_dict(tmp_path / "wrapped.ckpt")) == ["model.cls_token"]

    def test_existing_output_folder_is_refused(self, ckpt, tmp_path, capsys):
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "file").write_text("x")
        assert main(["convert-checkpoint", str(ckpt), "--out", str(tmp_path / "taken")]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "taken" in lines[0] and "not empty" in lines[0]


class _Server:
    """A real HTTP server on 127.0.0.1 serving one file with Range support; it cuts the first
    responses after ``cuts[0]``, ``cuts[1]``, ... bytes of their body and can ignore Range requests.
    Each request records its Range header and whether ``watch`` (the download's target) existed then."""

    def __init__(
        self, payload: bytes | Path, *, cuts: tuple[int, ...] = (), ranges: bool = True, watch: Path | None = None
    ) -> None:
        self.payload, self.cuts, self.ranges, self.watch = payload, list(cuts), ranges, watch
        self.requests: list[tuple[str | None, bool]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.headers.get("Range"), bool(server.watch and server.watch.exists())))
                data = server.payload if isinstance(server.payload, bytes) else server.payload.read_bytes()
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.ranges and int(match.group(1)) < len(data):
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = memoryview(data)[start:]
                if server.cuts:
                    self.wfile.write(body[: server.cuts.pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/files/{name}"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _watch_for_partial(target: Path, size: int, stop: threading.Event, seen: list[int]) -> None:
    """Record the size of ``target`` whenever it exists with a size other than ``size``."""
    while not stop.wait(0.0005):
        with contextlib.suppress(FileNotFoundError):
            if target.stat().st_size != size:
                seen.append(target.stat().st_size)


class TestDownload:
    PAYLOAD = (
        torch.randint(0, 256, (3_000_000,), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
        .numpy()
        .tobytes()
    )

    def _download(self, server: _Server, target: Path, **options) -> list[int]:
        stop, seen = threading.Event(), []
        watcher = threading.Thread(target=_watch_for_partial, args=(target, len(self.PAYLOAD), stop, seen))
        watcher.start()
        try:
            download_file(server.url("x.ckpt"), target, progress=False, retry_wait=0, **options)
        finally:
            stop.set()
            watcher.join()
        return seen

    def test_resumes_after_a_cut_with_a_range_request(self, tmp_path):
        target = tmp_path / "cache" / "x.ckpt"
        with _Server(self.PAYLOAD, cuts=(1_234_567,), watch=target) as server:
            partial_sizes = self._download(server, target)
        assert target.read_bytes() == self.PAYLOAD and partial_sizes == []
        assert server.requests == [(None, False), ("bytes=1234567-", False)]
        assert [p.name for p in target.parent.iterdir()] == ["x.ckpt"]  # no .part, no .lock left

    def test_server_without_ranges_restarts_from_zero(self, tmp_path):
        target = tmp_path / "x.ckpt"
        with _Server(self.PAYLOAD, cuts=(2_000_000,), ranges=False, watch=target) as server:
            assert self._download(server, target) == []
        assert target.read_bytes() == self.PAYLOAD and len(server.requests) == 2

    def test_giving_up_keeps_the_part_and_a_later_call_resumes(self, tmp_path):
        target = tmp_path / "x.ckpt"
        with (
            _Server(self.PAYLOAD, cuts=(1_000_000, 1_000_000, 0, 0)) as server,
            pytest.raises(DownloadError, match="4 request"),
        ):  # gives up after 2 fruitless ones
            download_file(server.url("x.ckpt"), target, attempts=2, progress=False, retry_wait=0)
        assert not target.exists() and (tmp_path / "x.ckpt.part").stat().st_size == 2_000_000
        with _Server(self.PAYLOAD, watch=target) as server:
            assert self._download(server, target) == []
        assert target.read_bytes() == self.PAYLOAD and server.requests == [("bytes=2000000-", False)]

    def test_missing_file_is_not_retried(self, tmp_path):
        with _Server(self.PAYLOAD) as server:
            server.httpd.RequestHandlerClass.do_GET = lambda handler: handler.send_error(404)
            with pytest.raises(DownloadError, match="404"):
                download_file(server.url("x.ckpt"), tmp_path / "x.ckpt", progress=False, retry_wait=0)

    def test_a_release_whose_checksum_differs_is_refused_and_never_in_the_cache(self, tmp_path, monkeypatch):
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("SEMCORR_CACHE", str(tmp_path / "cache"))
        with _Server(self.PAYLOAD) as server:
            release = Release("some-preset", server.url("x.ckpt"), "x.ckpt", "MIT", sha256="0" * 64)
            with pytest.raises(CheckpointError) as error:
                released_file(release, None, download=True, progress=False)
        message = str(error.value)
        assert (
            message.startswith("some-preset: not the authors' release: ")
            and "differs from the authors' release" in message
        )
        assert "\n" not in message and list((tmp_path / "cache" / "some-preset").iterdir()) == []


class TestPreset:
    def test_first_use_downloads_converts_and_caches(self, official, ckpt, tmp_path, monkeypatch):
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("SEMCORR_CACHE", str(tmp_path / "cache"))
        cached = tmp_path / "cache" / "distilldift" / "distilldift-us"
        with _Server(ckpt, cuts=(100_000_000,), watch=cached / "distilldift.json") as server:
            monkeypatch.setenv("SEMCORR_DISTILLDIFT_URL", server.url("distilldift_us.ckpt"))
            first = build_extractor("distilldift-us", input_size=56, device="cpu")
            assert [r[0] for r in server.requests] == [None, "bytes=100000000-"]
            second = build_extractor("distilldift-us", input_size=56, device="cpu")
            assert len(server.requests) == 2  # reused, not fetched again
        assert (cached / "distilldift.json").is_file() and not any((cached.parent / "downloads").iterdir())
        pixels = torch.rand(1, 3, 56, 56, generator=torch.Generator().manual_seed(6))
        with torch.no_grad():
            assert (first(pixels) - official_forward(official, pixels)).abs().max() < TOLERANCE
            assert torch.equal(first(pixels), second(pixels))

    def test_a_download_that_does_not_convert_is_deleted(self, tmp_path, monkeypatch):
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("SEMCORR_CACHE", str(tmp_path / "cache"))
        with _Server(b"not a checkpoint" * 1000) as server:
            monkeypatch.setenv("SEMCORR_DISTILLDIFT_URL", server.url("distilldift_us.ckpt"))
            with pytest.raises(CheckpointError, match="the file was deleted"):
                build_extractor("distilldift-us")
        root = tmp_path / "cache" / "distilldift"
        assert not (root / "distilldift-us").exists() and not any((root / "downloads").iterdir())

    def test_offline_and_not_cached_is_one_clear_line(self, tmp_path, monkeypatch):
        monkeypatch.setenv("SEMCORR_CACHE", str(tmp_path / "empty"))
        with pytest.raises(WeightsUnavailableError) as error:
            build_extractor("distilldift-us")
        message = str(error.value)
        assert "\n" not in message and "HF_HUB_OFFLINE is set" in message
        for part in (
            "https://ommer-lab.com/files/distilldift/distilldift_us.ckpt",
            "--weights",
            "convert-checkpoint",
            "SEMCORR_DISTILLDIFT_URL",
            "--random-weights",
            str(tmp_path / "empty"),
        ):
            assert part in message
        with pytest.raises(WeightsUnavailableError, match="published no download address"):
            build_extractor("distilldift-ws")

    def test_default_model_of_the_commands(self):
        assert DEFAULT_MODEL == "distilldift-us"
        parser = build_parser()
        for argv in (
            ["match", "a.png", "b.png"],
            ["demo"],
            ["video", "clip.mp4"],
            ["eval", "spair", "--data-root", "x"],
            ["segment", "a.png", "--out", "masks"],
        ):
            assert parser.parse_args(argv).model == "distilldift-us"
        assert parser.parse_args(["match", "a", "b", "--model", "dinov2-b-reg"]).model == "dinov2-b-reg"
