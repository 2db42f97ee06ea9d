"""``semcorr app`` without a browser: the JSON API over real HTTP, its limits and errors, features kept
across clicks, the heatmap picture, the command line. The page in a browser: tests/test_app_browser.py."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHIFT, running_app, shifted_pair
from PIL import Image

from semcorr import Matcher
from semcorr.app import AppSettings, create_server
from semcorr.demo import DEMO_POINTS, demo_images
from semcorr.errors import SettingError
from semcorr.geometry import ImageGeometry
from semcorr.viz import similarity_overlay


@pytest.fixture(scope="module")
def server():
    with running_app("baseline", max_upload_mb=0.5, max_megapixels=1.0) as running:
        yield running


def request(server, path: str, body: bytes | dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON answer) of a GET (no body) or POST to the server."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    kind = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
    call = urllib.request.Request(server.url + path, data=data, headers={**kind, **(headers or {})})
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def send_image(server, data: bytes, name: str, kind: str = "image/png") -> tuple[int, dict]:
    """POST an image file's bytes as the page does: its type, its name in X-Filename."""
    return request(server, "/api/images", data, {"Content-Type": kind, "X-Filename": name})


def upload(server, path: Path) -> dict:
    status, answer = send_image(server, path.read_bytes(), path.name)
    assert status == 200, answer
    return answer


@pytest.fixture(scope="module")
def pair(server, tmp_path_factory):
    return [upload(server, path) for path in shifted_pair(tmp_path_factory.mktemp("pair"))]


class TestTransfer:
    def test_points_carried_to_a_batch_within_a_cell_as_coco(self, server, pair):
        a, b = pair
        points = [[100.0, 80.0], [180.5, 120.0]]
        status, answer = request(
            server,
            "/api/transfer",
            {
                "model": "baseline",
                "source": a["id"],
                "points": points,
                "targets": [b["id"], a["id"]],
                "min_confidence": 0.0,
            },
        )
        assert status == 200, answer
        shifted, itself = answer["targets"]
        assert shifted["id"] == b["id"] and len(shifted["points"]) == 2 and all(shifted["visible"])
        for point, found in zip(points, shifted["points"]):
            assert abs(found[0] - point[0] - SHIFT[0]) <= b["width"] / 31
            assert abs(found[1] - point[1] - SHIFT[1]) <= b["height"] / 31
        assert np.allclose(itself["points"], points, atol=b["width"] / 62)  # the example onto itself
        assert all(0.0 <= c <= 1.0 for c in shifted["confidence"] + itself["confidence"])
        coco = json.loads(answer["coco_json"])
        assert [i["file_name"] for i in coco["images"]] == ["cat_b.png", "cat_a.png"]
        assert coco["categories"][0]["keypoints"] == ["1", "2"]
        assert coco["annotations"][0]["keypoints"][:2] == shifted["points"][0]

    def test_a_threshold_marks_points_not_visible(self, server, pair):
        a, b = pair
        status, answer = request(
            server,
            "/api/transfer",
            {
                "model": "baseline",
                "source": a["id"],
                "points": [[100.0, 80.0]],
                "targets": [b["id"]],
                "min_confidence": 1.0,
            },
        )
        target = answer["targets"][0]
        assert status == 200 and target["visible"] == [target["confidence"][0] >= 1.0]
        keypoints = json.loads(answer["coco_json"])["annotations"][0]["keypoints"]
        assert keypoints == ([0, 0, 0] if not target["visible"][0] else keypoints)

    @pytest.mark.parametrize(
        "change,message",
        [
            ({"points": []}, "no points given"),
            ({"targets": []}, "give 1 to 16"),
            ({"min_confidence": 2}, "--min-confidence 2.0"),
            ({"targets": ["nothing"]}, "nothing"),
        ],
    )
    def test_bad_requests_are_one_line(self, server, pair, change, message):
        a, b = pair
        body = {"model": "baseline", "source": a["id"], "points": [[10.0, 10.0]], "targets": [b["id"]], **change}
        status, answer = request(server, "/api/transfer", body)
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"]


class TestServer:
    def test_binds_to_loopback_unless_told(self, server):
        assert AppSettings().host == "127.0.0.1"
        assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")

    def test_page_and_its_assets(self, server):
        with urllib.request.urlopen(server.url + "/", timeout=30) as response:
            page = response.read().decode()
            assert "Content-Security-Policy" in response.headers
        for asset in ("/static/app.js", "/static/app.css"):
            assert asset in page
            with urllib.request.urlopen(server.url + asset, timeout=30) as response:
                assert response.status == 200 and response.read()

    @pytest.mark.parametrize(
        "path",
        [
            "/static/../server.py",
            "/static/..%2Fserver.py",
            "/etc/passwd",
            "/api/images/../../x.png",
            "/static/nothing.js",
        ],
    )
    def test_nothing_else_is_served(self, server, path):
        status, answer = request(server, path)
        assert status == 404 and "no such" in answer["error"]

    def test_config_lists_baseline_examples_and_limits(self, server):
        status, config = request(server, "/api/config")
        assert status == 200
        assert [m["name"] for m in config["models"]] == ["baseline"]
        assert [e["id"] for e in config["examples"]] == [p.stem for p in demo_images()]
        assert config["limits"]["max_upload_bytes"] == 500_000


class TestMatch:
    def test_shifted_copy_is_found_within_a_cell(self, server, pair):
        a, b = pair
        points = [[100.0, 80.0], [180.5, 120.0]]
        status, answer = request(
            server,
            "/api/match",
            {"model": "baseline", "image_a": a["id"], "image_b": b["id"], "points": points, "heatmap": 1},
        )
        assert status == 200, answer
        for point, match in zip(points, answer["result"]["matches"]):
            assert match["source"] == point
            assert abs(match["target"][0] - point[0] - SHIFT[0]) <= b["width"] / 31
            assert abs(match["target"][1] - point[1] - SHIFT[1]) <= b["height"] / 31
        picture = Image.open(io.BytesIO(base64.b64decode(answer["heatmap"].split(",", 1)[1])))
        assert picture.mode == "RGBA" and picture.size == (256, 192)
        assert json.loads(answer["result_json"]) == answer["result"] and answer["result_json"].endswith("}\n")

    def test_the_json_semcorr_match_writes(self, server):
        """The result is Matcher.match's, whose JSON ``semcorr match`` writes (images named as uploaded)."""
        status, answer = request(
            server,
            "/api/match",
            {
                "model": "baseline",
                "image_a": "motorcycle_left",
                "image_b": "motorcycle_right",
                "points": DEMO_POINTS[:3],
            },
        )
        expected = Matcher("baseline").match(*demo_images(), DEMO_POINTS[:3])
        result = answer["result"]
        assert status == 200 and answer["heatmap"] is None
        assert set(result) == set(expected) and result["settings"] == expected["settings"]
        assert result["image_a"] == {**expected["image_a"], "name": "motorcycle_left.png"}
        for got, want in zip(result["matches"], expected["matches"]):
            assert got["source"] == want["source"]
            assert np.allclose(got["target"], want["target"], atol=0.01) and abs(got["score"] - want["score"]) < 1e-3

    def test_features_are_computed_once_per_model_image_and_orientation(self, tmp_path):
        with running_app("baseline") as server:
            a, b = (upload(server, path) for path in shifted_pair(tmp_path))
            body = {"model": "baseline", "image_a": a["id"], "image_b": b["id"], "heatmap": 0}
            for point in ([50, 60], [120, 90], [200, 150]):
                assert request(server, "/api/match", {**body, "points": [point]})[0] == 200
            assert server.engine.extractions == 2
            status, answer = request(server, "/api/match", {**body, "points": [[50, 60]], "pose_align": True})
            assert status == 200 and answer["result"]["pose_align"]["flipped"] is False
            assert server.engine.extractions == 3  # mirrored A, once
            assert (
                request(
                    server, "/api/prepare", {"model": "baseline", "images": [a["id"], b["id"]], "pose_align": True}
                )[0]
                == 200
            )
            assert server.engine.extractions == 3

    @pytest.mark.parametrize(
        "change, message",
        [
            ({"model": "dinov2-b-reg"}, "not offered by this page; choose one of: baseline"),
            ({"image_b": "0123abcd"}, "is not on the server"),
            ({"points": [[9999, 10]]}, "point 0"),
            ({"points": "10,20"}, "'points' must be a list"),
            ({"heatmap": 5}, "point 5 does not exist"),
            ({"points": [[1, 1]] * 65}, "at most 64"),
        ],
    )
    def test_bad_requests_answer_one_line(self, server, change, message):
        body = {
            "model": "baseline",
            "image_a": "motorcycle_left",
            "image_b": "motorcycle_right",
            "points": [[10, 10]],
            **change,
        }
        status, answer = request(server, "/api/match", body)
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"]

    def test_a_body_that_is_not_json(self, server):
        status, answer = request(server, "/api/match", b"{nope", {"Content-Type": "application/json"})
        assert status == 400 and answer["error"] == "the request body is not JSON"


class TestUploads:
    def test_oversized_upload_is_refused_unread(self, server):
        """Over the limit, the answer comes from the length alone: the body is never read."""
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        connection.putrequest("POST", "/api/images")
        connection.putheader("Content-Length", str(3_000_000))
        connection.putheader("Content-Type", "image/jpeg")
        connection.putheader("X-Filename", "huge.jpg")
        connection.endheaders()
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        assert response.status == 413
        assert answer["error"] == (
            "huge.jpg: 3.0 MB is over this page's upload limit of 0.5 MB; use a smaller file "
            "(or start the page with a higher --max-upload-mb)"
        )

    def test_too_many_pixels_refused_before_decoding(self, server, tmp_path):
        path = tmp_path / "wide.png"
        Image.new("RGB", (2000, 1000), "white").save(path)  # 2 Mpx in a few kB
        status, answer = send_image(server, path.read_bytes(), "wide.png")
        assert status == 400
        assert answer["error"].startswith("wide.png: 2000x1000 pixels (2.0 Mpx) is over this page's limit of 1 Mpx")

    def test_not_an_image_names_the_file_not_the_server_folder(self, server):
        status, answer = send_image(server, b"hello", "..%2Fnotes.txt", "application/octet-stream")
        assert status == 400 and answer["error"] == "notes.txt: not an image file (Pillow cannot identify it)"

    def test_no_length(self, server):
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        connection.putrequest("POST", "/api/images")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("X-Filename", "nothing.png")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]

    def test_a_body_shorter_than_announced_keeps_nothing(self, server):
        """The client goes away mid-body: nobody is left to answer; nothing is kept, the server serves on."""
        before = server.uploads._images.copy()
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=30) as connection:
            connection.sendall(
                b"POST /api/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                b"Content-Type: image/png\r\nX-Filename: cut.png\r\n\r\n" + b"x" * 10
            )
            connection.shutdown(socket.SHUT_WR)
            assert connection.makefile("rb").read() == b""  # closed, unanswered
        assert server.uploads._images == before and request(server, "/api/config")[0] == 200

    def test_nothing_written_outside_the_temporary_folder(self, tmp_path, monkeypatch):
        images = shifted_pair(tmp_path)
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        with running_app("baseline", max_images=2) as server:
            folder = Path(server.folder)
            uploads = [upload(server, images[i % 2]) for i in range(3)]
            assert (
                request(
                    server,
                    "/api/match",
                    {
                        "model": "baseline",
                        "image_a": uploads[1]["id"],
                        "image_b": uploads[2]["id"],
                        "points": [[9, 9]],
                        "heatmap": 0,
                    },
                )[0]
                == 200
            )
            kept = sorted(p.name for p in folder.iterdir())
            assert kept == sorted(
                [u["id"] for u in uploads[1:]]
                + [f"{u['id']}.png" for u in uploads[1:]]
                + [f"{p.stem}.png" for p in demo_images()]
            )  # the oldest upload was dropped
            assert (
                request(
                    server,
                    "/api/match",
                    {"model": "baseline", "image_a": uploads[0]["id"], "image_b": uploads[2]["id"], "points": [[9, 9]]},
                )[0]
                == 400
            )
        assert not folder.exists() and not any(work.iterdir())


def test_similarity_overlay_peaks_where_the_map_peaks():
    similarity = torch.zeros(60, 60)
    similarity[30, 45] = 1.0  # grid cell (x 45, y 30)
    geometry = ImageGeometry.fit((100, 200), 434, "letterbox")  # a wide image: padding above and below
    picture = similarity_overlay(similarity, geometry, (50, 100))
    assert picture.shape == (50, 100, 4) and picture.dtype == np.uint8
    row, col = np.unravel_index(picture[..., 3].argmax(), picture.shape[:2])
    cell = geometry.from_grid(torch.tensor([45.0, 30.0]), (60, 60))  # original pixels
    assert abs((col + 0.5) * 2 - float(cell[0])) <= 4 and abs((row + 0.5) * 2 - float(cell[1])) <= 4
    assert picture[..., 3].min() == round(0.05 * 255)


class TestCommand:
    def test_help(self, cli):
        result = cli("app", "--help")
        assert result.returncode == 0
        for option in (
            "--host",
            "--port",
            "--models",
            "--max-upload-mb",
            "--max-megapixels",
            "--model",
            "--random-weights",
            "--window",
        ):
            assert option in result.stdout

    def test_bad_port_is_one_line(self, cli):
        result = cli("app", "--port", "70000")
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "semcorr: error: --port 70000 (AppSettings.port): must be an integer in [0, 65535]"
        )

    def test_busy_port_is_one_line(self, cli):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            result = cli("app", "--model", "baseline", "--port", busy.getsockname()[1])
        assert result.returncode == 1 and result.stderr.count("\n") == 1
        assert "cannot listen on 127.0.0.1 port" in result.stderr and "--port" in result.stderr

    def test_unavailable_model_is_left_out_for_the_baseline(self):
        lines = []
        server = create_server("distilldift-us", settings=AppSettings(port=0), log=lines.append)
        try:
            assert [m["name"] for m in server.engine.models()] == ["baseline"]
            assert "distilldift-us" in lines[0] and "The page leaves distilldift-us out" in lines[0]
        finally:
            server.close()

    def test_settings_check_themselves(self):
        with pytest.raises(SettingError, match=r"--max-upload-mb 0 \(AppSettings.max_upload_mb\)"):
            AppSettings(max_upload_mb=0)
        assert AppSettings(max_megapixels=2.5).max_pixels == 2_500_000


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 30) -> tuple[int, dict]:
    """(status, JSON answer) of a request written byte for byte (``head`` without its final blank line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


class TestSecurity:
    """What another web page, or a client that misbehaves, cannot do (semcorr.app.guard)."""

    @pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1.evil.example", "[::2]:80"])
    def test_a_foreign_host_is_refused(self, server, host):
        """DNS rebinding: a page on another name that resolves to this machine reaches nothing."""
        for path, body in (("/", None), ("/api/config", None), ("/api/match", {"model": "baseline"})):
            status, answer = request(server, path, body, {"Host": host})
            assert status == 421 and "is not one this server answers to" in answer["error"]
            assert "\n" not in answer["error"]

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost:1234", "LOCALHOST.", "[::1]:7860"])
    def test_loopback_names_are_served(self, server, host):
        assert request(server, "/api/config", None, {"Host": host})[0] == 200

    def test_allowed_host_adds_a_name(self):
        with running_app("baseline", allowed_hosts=("semcorr.test",)) as server:
            assert request(server, "/api/config", None, {"Host": f"semcorr.test:{server.server_port}"})[0] == 200
            assert request(server, "/api/config", None, {"Host": "other.test"})[0] == 421

    def test_a_cross_origin_upload_is_refused_and_keeps_nothing(self, server):
        """CSRF: another site's page may POST text/plain without asking the browser's permission."""
        before = dict(server.uploads._images)
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, format="PNG")
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Origin": f"http://127.0.0.1:{server.server_port + 1}"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            status, answer = request(
                server, "/api/images", png.getvalue(), {"Content-Type": "text/plain", "X-Filename": "x.png", **headers}
            )
            assert status == 403 and "refused" in answer["error"]
        assert server.uploads._images == before

    def test_a_same_origin_post_is_served(self, server):
        own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        status, _ = request(server, "/api/prepare", {"model": "baseline", "images": ["motorcycle_left"]}, own)
        assert status == 200

    @pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
    def test_json_only_as_application_json(self, server, kind):
        body = json.dumps({"model": "baseline", "images": ["motorcycle_left"]}).encode()
        status, answer = request(server, "/api/prepare", body, {"Content-Type": kind})
        assert status == 415 and answer["error"].startswith("send JSON as application/json")

    @pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded"])
    def test_an_upload_only_as_an_image_type(self, server, kind, tmp_path):
        status, answer = send_image(server, b"\x89PNG", "a.png", kind)
        assert status == 415 and "image/" in answer["error"]

    def test_an_oversized_json_body_is_refused_unread(self, server):
        head = (
            f"POST /api/match HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {5_000_000}"
        ).encode()
        status, answer = raw_request(server.server_port, head)
        assert status == 413 and answer["error"] == "the request is over 1000000 bytes"

    def test_an_oversized_chunked_upload_is_cut_off(self, server):
        chunk = b"x" * 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"  # 655 kB > 0.5 MB
        head = (
            b"POST /api/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nX-Filename: big.png\r\n"
            b"Transfer-Encoding: chunked"
        )
        status, answer = raw_request(server.server_port, head, body)
        assert (
            status == 413
            and answer["error"].startswith("big.png: ")
            and "over this page's upload limit of 0.5 MB" in answer["error"]
        )

    def test_slow_clients_are_cut_off(self):
        with running_app("baseline", client_timeout=1.0) as server:
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.server_port), timeout=30) as connection:
                connection.sendall(b"GET /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never end
                assert connection.recv(100) == b""  # closed by the server
            assert 0.9 <= time.monotonic() - started < 10
            started = time.monotonic()
            head = (
                b"POST /api/match HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50"
            )
            status, answer = raw_request(server.server_port, head, b'{"model": ')  # the body never ends
            assert status == 408 and answer["error"] == "the request's body did not arrive within 1 s"
            assert 0.9 <= time.monotonic() - started < 10
            assert request(server, "/api/config")[0] == 200

    def test_requests_at_once_are_bounded(self):
        with running_app("baseline", max_requests=1, client_timeout=5.0) as server:
            with socket.create_connection(("127.0.0.1", server.server_port), timeout=30) as waiting:
                waiting.sendall(
                    b"POST /api/match HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 50\r\n\r\n{"
                )  # holds the one place until its body times out
                time.sleep(0.3)
                status, answer = request(server, "/api/config")
                assert status == 503 and answer["error"].startswith("the server is busy (1 requests at once)")
            time.sleep(0.3)
            assert request(server, "/api/config")[0] == 200

    def test_a_bug_is_one_line_without_internals(self, tmp_path, monkeypatch):
        lines = []
        server = create_server("baseline", settings=AppSettings(port=0), log=lines.append).start()
        try:

            def broken(*args, **kwargs):
                raise RuntimeError("secret detail /home/user/weights")

            monkeypatch.setattr(server.engine, "match", broken)
            status, answer = request(
                server,
                "/api/match",
                {"model": "baseline", "image_a": "motorcycle_left", "image_b": "motorcycle_right", "points": [[1, 1]]},
            )
        finally:
            server.close()
        assert status == 500 and answer == {"error": "internal error (the server's log has the details)"}
        assert "Traceback" in lines[-1] and "secret detail" in lines[-1]

    def test_responses_carry_the_protective_headers(self, server):
        with urllib.request.urlopen(server.url + "/api/config", timeout=30) as response:
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        with urllib.request.urlopen(server.url + "/", timeout=30) as response:
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
