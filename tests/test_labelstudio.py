"""``semcorr label-studio`` against a real Label Studio (started once for the module from its own
environment, see tests/labelstudio_server.py; skipped, saying why, where it is not installed), and
the parts that need none: the labelling config, the examples, the settings, the server's guard.

The images are crops of one photograph (scikit-image's ``chelsea``) at known offsets, so every
keypoint's true place in every crop is known exactly; the model is the weight-free baseline.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from labelstudio_server import LabelStudioServer, find_label_studio, make_template
from PIL import Image

from semcorr.errors import InputError, SettingError
from semcorr.labelstudio import (
    LabelStudioClient,
    LabelStudioError,
    LabelStudioSettings,
    create_backend_server,
    project_examples,
    read_label_config,
)

LABELS = ("left eye", "right eye", "nose")
SCENE_POINTS = {"left eye": (172.0, 110.0), "right eye": (315.0, 133.0), "nose": (262.0, 240.0)}  # chelsea's pixels
SIZE = (320, 240)  # (width, height) of a crop
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <KeyPointLabels name="kp" toName="image" strokeWidth="2">
    <Label value="left eye" background="red"/><Label value="right eye" background="blue"/>
    <Label value="nose" background="green"/>
  </KeyPointLabels>
  <RectangleLabels name="box" toName="image"><Label value="face" background="orange"/></RectangleLabels>
</View>"""
BOXES_ONLY = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="face"/></RectangleLabels></View>"""
EXAMPLES = ((10, 20), (110, 15))  # crop offsets (x, y) of the annotated tasks
TARGETS = ((60, 40), (125, 50))  # ... and of the tasks to predict


def crop_png(offset: tuple[int, int], size: tuple[int, int] = SIZE) -> bytes:
    import skimage.data

    (x, y), (width, height) = offset, size
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()[y : y + height, x : x + width]).save(buffer, format="PNG")
    return buffer.getvalue()


def truth(offset: tuple[int, int], label: str) -> tuple[float, float]:
    """Where ``label`` is in the crop at ``offset``, in its pixels."""
    x, y = SCENE_POINTS[label]
    return x - offset[0], y - offset[1]


def keypoint(label: str, offset: tuple[int, int], region: str, size: tuple[int, int] = SIZE) -> dict:
    """A keypoint region as Label Studio stores it: percent of the image's width and height."""
    x, y = truth(offset, label)
    return {
        "id": region,
        "from_name": "kp",
        "to_name": "image",
        "type": "keypointlabels",
        "original_width": size[0],
        "original_height": size[1],
        "image_rotation": 0,
        "value": {"x": 100 * x / size[0], "y": 100 * y / size[1], "width": 0.75, "keypointlabels": [label]},
    }


def face_box(offset: tuple[int, int]) -> dict:
    left, top = 120 - offset[0], 60 - offset[1]  # the face in chelsea: x 120..360, y 60..290
    return {
        "id": "box",
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": SIZE[0],
        "original_height": SIZE[1],
        "image_rotation": 0,
        "value": {
            "x": 100 * left / SIZE[0],
            "y": 100 * top / SIZE[1],
            "width": 100 * (SIZE[0] - left) / SIZE[0],
            "height": 100 * (SIZE[1] - top) / SIZE[1],
            "rotation": 0,
            "rectanglelabels": ["face"],
        },
    }


# --- without Label Studio ----------------------------------------------------------------------


class TestProject:
    def test_the_config_gives_labels_image_field_and_box(self):
        config = read_label_config(CONFIG)
        assert (config.from_name, config.to_name, config.image_key, config.labels, config.box_name) == (
            "kp",
            "image",
            "image",
            LABELS,
            "box",
        )

    @pytest.mark.parametrize(
        "xml, message",
        [
            (BOXES_ONLY, "has no KeyPointLabels"),
            ("<View", "is not XML"),
            (
                '<View><KeyPointLabels name="kp" toName="nothing"><Label value="a"/></KeyPointLabels></View>',
                "which is no <Image",
            ),
        ],
    )
    def test_a_config_without_keypoints_is_one_line(self, xml, message):
        with pytest.raises(InputError, match=message):
            read_label_config(xml)

    def test_examples_in_percent_one_per_box_unknown_labels_said_and_left_out(self):
        config = read_label_config(CONFIG)
        lines: list[str] = []
        two_faces = [
            keypoint("left eye", (10, 20), "a"),
            keypoint("nose", (10, 20), "b"),
            face_box((10, 20)),
            {**face_box((10, 20)), "value": {"x": 0, "y": 0, "width": 10, "height": 10, "rectanglelabels": ["face"]}},
            {**keypoint("nose", (10, 20), "c"), "value": {"x": 5, "y": 5, "keypointlabels": ["nose"]}},
        ]
        tasks = [
            {
                "id": 1,
                "data": {"image": "/data/upload/1/a.png"},
                "annotations": [
                    {"id": 1, "updated_at": "2026-01-01", "result": [keypoint("left eye", (10, 20), "x")]},
                    {
                        "id": 2,
                        "updated_at": "2026-02-01",
                        "result": [
                            keypoint("right eye", (10, 20), "y"),
                            {**keypoint("nose", (10, 20), "z"), "value": {"x": 1, "y": 2, "keypointlabels": ["tail"]}},
                        ],
                    },
                ],
            },
            {"id": 2, "data": {"image": "/data/upload/1/b.png"}, "annotations": [{"id": 3, "result": two_faces}]},
            {
                "id": 3,
                "data": {"image": "/data/upload/1/c.png"},
                "annotations": [{"id": 4, "was_cancelled": True, "result": [keypoint("nose", (0, 0), "n")]}],
            },
        ]
        examples = project_examples(tasks, config, lines.append)
        assert [(e.task, e.labelled) for e in examples] == [
            (1, (False, True, False)),
            (2, (True, False, True)),
            (2, (False, False, True)),
        ]
        x, y = truth((10, 20), "right eye")
        assert examples[0].points[1] == pytest.approx((100 * x / 320, 100 * y / 240))
        assert lines == [
            "task 1: keypoint label 'tail' is not in the labelling config (left eye, right eye, nose); left out"
        ]


class TestSettings:
    def test_a_key_goes_only_to_a_given_address_and_is_never_shown(self):
        with pytest.raises(SettingError, match="--url None .*must be given with an API key"):
            LabelStudioSettings(api_key="secret")
        settings = LabelStudioSettings(url="http://localhost:8080", api_key="secret")
        assert "secret" not in repr(settings) and settings.port == 9090

    def test_the_backend_is_guarded_like_the_page(self):
        server = create_backend_server("baseline", settings=LabelStudioSettings(port=0), log=lambda line: None).start()
        try:
            assert post(server.url, "/predict", {"tasks": []}, {"Host": "evil.example"})[0] == 421
            assert post(server.url, "/webhook", {"action": "X"}, {"Origin": "http://evil.example"})[0] == 403
            status, answer = post(server.url, "/predict", b'{"tasks": []}', {"Content-Type": "text/plain"})
            assert status == 415 and "application/json" in answer["error"]
            status, answer = post(server.url, "/predict", {"tasks": "none", "project": "1.2"})
            assert status == 400 and answer == {"error": "request field 'tasks' must be a list of tasks"}
            with urllib.request.urlopen(server.url + "/health", timeout=30) as response:
                assert json.loads(response.read())["status"] == "UP"
        finally:
            server.close()


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in web server on 127.0.0.1: records each request's path and Authorization header;
    ``/redirect`` sends the client to ``/moved`` on ``elsewhere``, any other path answers a PNG."""

    elsewhere = ""

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.elsewhere + "/moved")
            self.end_headers()
            return
        body = crop_png((0, 0), (64, 48))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def two_hosts():
    """Two stand-in servers on different ports (different origins): Label Studio's and another."""
    servers = []
    for _ in range(2):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Recorder,), {}))
        server.seen = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    ours, other = servers
    ours.RequestHandlerClass.elsewhere = f"http://127.0.0.1:{other.server_port}"
    yield ours, other
    for server in servers:
        server.shutdown()
        server.server_close()


class TestClient:
    def test_the_key_goes_to_label_studio_only(self, two_hosts):
        ours, other = two_hosts
        client = LabelStudioClient(f"http://127.0.0.1:{ours.server_port}", "secret-key")
        for url in ("/data/upload/1/a.png", f"http://127.0.0.1:{other.server_port}/b.png", "/redirect"):
            assert client.image(url, 1_000_000).startswith(b"\x89PNG")
        assert ours.seen == [("/data/upload/1/a.png", "Token secret-key"), ("/redirect", "Token secret-key")]
        assert other.seen == [("/b.png", None), ("/moved", None)]  # never the key, nor after a redirect

    def test_an_image_over_the_limit_or_not_http_is_one_line(self, two_hosts):
        client = LabelStudioClient(f"http://127.0.0.1:{two_hosts[0].server_port}", "secret-key")
        with pytest.raises(LabelStudioError, match=r"a.png: 0.0 MB is over the limit of 0.0001 MB"):
            client.image("/a.png", 100)
        with pytest.raises(LabelStudioError, match=r"reads images over http\(s\) only, not s3://"):
            client.image("s3://bucket/a.png", 1_000_000)
        assert "secret-key" not in repr(client)


def post(url: str, path: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- with a real Label Studio --------------------------------------------------------------------


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    executable, why = find_label_studio()
    if executable is None:
        pytest.skip(why)
    server = LabelStudioServer(executable, tmp_path_factory.mktemp("label-studio") / "data")
    server.start(make_template(executable))
    yield server
    server.stop()


class Backend:
    """A ``semcorr label-studio`` (baseline) serving from a thread, and what it logged."""

    def __init__(self, label_studio: LabelStudioServer, **settings):
        self.lines: list[str] = []
        options = {"url": label_studio.url, "api_key": label_studio.token, **settings}
        self.server = create_backend_server(
            "baseline", settings=LabelStudioSettings(port=0, **options), log=self.lines.append
        ).start()
        self.url = self.server.url

    def healthy(self) -> bool:
        with urllib.request.urlopen(self.url + "/health", timeout=30) as response:
            return json.loads(response.read())["status"] == "UP"


@pytest.fixture(scope="module")
def backend(label_studio):
    running = Backend(label_studio)
    yield running
    running.server.close()


def new_project(ls: LabelStudioServer, images: dict[str, bytes], config: str = CONFIG) -> tuple[int, dict[str, int]]:
    """A project with one task per image: its id and the task ids by image name."""
    project = ls.api("POST", "/api/projects", {"title": "semcorr test", "label_config": config})["id"]
    files = {f"file{i}": (name, data) for i, (name, data) in enumerate(images.items())}  # one field per file
    ls.api("POST", f"/api/projects/{project}/import", files=files)
    tasks = ls.api("GET", f"/api/tasks?project={project}&page_size=100")["tasks"]
    by_name = {}
    for task in tasks:
        stored = task["data"]["image"].rsplit("/", 1)[1]
        by_name[next(name for name in images if stored.endswith("-" + name))] = task["id"]
    return project, by_name


def connect(ls: LabelStudioServer, project: int, backend: Backend) -> None:
    ls.api("POST", "/api/ml", {"url": backend.url, "project": project, "title": "semcorr", "is_interactive": False})


def predict(ls: LabelStudioServer, project: int, tasks: list[int]) -> None:
    ls.api(
        "POST",
        f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
        {"selectedItems": {"all": False, "included": tasks}},
    )


def predictions(ls: LabelStudioServer, task: int) -> list[dict]:
    return ls.api("GET", f"/api/predictions?task={task}")


def annotate(ls: LabelStudioServer, task: int, result: list[dict]) -> int:
    return ls.api("POST", f"/api/tasks/{task}/annotations", {"result": result})["id"]


def example_images() -> dict[str, bytes]:
    names = [f"example{i}.png" for i in range(len(EXAMPLES))] + [f"target{i}.png" for i in range(len(TARGETS))]
    return dict(zip(names, (crop_png(offset) for offset in EXAMPLES + TARGETS), strict=True))


def check_points(prediction: dict, offset: tuple[int, int], labels=LABELS, size=SIZE) -> None:
    """The prediction places ``labels`` within a cell of the baseline's grid of their true place."""
    regions = {r["value"]["keypointlabels"][0]: r for r in prediction["result"]}
    assert sorted(regions) == sorted(labels)
    for label, region in regions.items():
        assert (region["from_name"], region["to_name"], region["type"]) == ("kp", "image", "keypointlabels")
        assert (region["original_width"], region["original_height"]) == size
        assert 0.5 <= region["score"] <= 1
        x, y = (region["value"]["x"] * size[0] / 100, region["value"]["y"] * size[1] / 100)
        want = truth(offset, label)
        assert abs(x - want[0]) <= size[0] / 31 and abs(y - want[1]) <= size[1] / 31, (label, (x, y), want)


def test_round_trip_predictions_follow_the_examples(label_studio, backend):
    """Annotate two crops, connect, predict two others; change and delete an example: Label Studio asks
    again (a new model version), and the predictions stay right."""
    ls = label_studio
    project, tasks = new_project(ls, example_images())
    annotate(
        ls,
        tasks["example0.png"],
        [keypoint(label, EXAMPLES[0], f"e0{k}") for k, label in enumerate(LABELS)] + [face_box(EXAMPLES[0])],
    )
    second = annotate(
        ls, tasks["example1.png"], [keypoint(label, EXAMPLES[1], f"e1{k}") for k, label in enumerate(LABELS)]
    )
    connect(ls, project, backend)
    assert [hook["url"] for hook in ls.api("GET", f"/api/webhooks?project={project}")] == [backend.url + "/webhook"]
    targets = [tasks[f"target{i}.png"] for i in range(len(TARGETS))]
    started = time.monotonic()
    predict(ls, project, targets)
    seconds = time.monotonic() - started
    versions = []
    for task, offset in zip(targets, TARGETS, strict=True):
        found = predictions(ls, task)
        assert len(found) == 1, found
        check_points(found[0], offset)
        versions.append(found[0]["model_version"])
    assert versions[0] == versions[1] and versions[0].startswith("semcorr-baseline-")
    assert seconds < 60

    ls.api(
        "PATCH",
        f"/api/annotations/{second}",
        {"result": [keypoint(label, EXAMPLES[1], f"e1{k}") for k, label in enumerate(LABELS[:2])]},
    )
    predict(ls, project, targets[:1])
    found = predictions(ls, targets[0])
    assert len(found) == 2 and len({p["model_version"] for p in found}) == 2
    ls.api("DELETE", f"/api/annotations/{second}")
    predict(ls, project, targets[:1])
    found = predictions(ls, targets[0])
    assert len({p["model_version"] for p in found}) == 3
    for prediction in found:
        check_points(prediction, TARGETS[0])
    assert backend.healthy()


def test_a_changed_config_rereads_the_examples_and_nothing_is_extracted_twice(label_studio, backend):
    """The labels reordered in the project's config, with no webhook to say so: the config Label Studio
    sends with the next request makes the examples be read again under the new order (each point
    keeps its label); unchanged examples are not extracted again for a second target."""
    ls = label_studio
    project, tasks = new_project(ls, example_images())
    for i, offset in enumerate(EXAMPLES):
        annotate(ls, tasks[f"example{i}.png"], [keypoint(label, offset, f"e{i}{k}") for k, label in enumerate(LABELS)])
    connect(ls, project, backend)
    targets = [tasks[f"target{i}.png"] for i in range(len(TARGETS))]
    predict(ls, project, targets[:1])
    extracted = backend.server.backend.extractions  # the two examples and the first target, at most
    predict(ls, project, targets[1:])
    assert backend.server.backend.extractions == extracted + 1  # only the new target
    reordered = CONFIG.replace(
        '<Label value="left eye" background="red"/><Label value="right eye" background="blue"/>\n    '
        '<Label value="nose" background="green"/>',
        '<Label value="nose" background="green"/><Label value="right eye" background="blue"/>'
        '<Label value="left eye" background="red"/>',
    )
    assert reordered != CONFIG
    for hook in ls.api("GET", f"/api/webhooks?project={project}"):  # no webhook: the config sent with
        ls.api("DELETE", f"/api/webhooks/{hook['id']}")  # the next request must be enough
    ls.api("PATCH", f"/api/projects/{project}", {"label_config": reordered})
    predict(ls, project, targets)
    for task, offset in zip(targets, TARGETS, strict=True):
        found = predictions(ls, task)
        assert len(found) == 2 and len({p["model_version"] for p in found}) == 2  # a new version for the new order
        for prediction in found:
            check_points(prediction, offset)


def test_min_confidence_leaves_out_a_keypoint_outside_the_image(label_studio, backend):
    """The nose lies below a shorter crop: predicted with a low confidence, it is left out."""
    ls = label_studio
    images = {"example.png": crop_png(EXAMPLES[0]), "short.png": crop_png((0, 0), (320, 200))}
    project, tasks = new_project(ls, images)
    annotate(ls, tasks["example.png"], [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)])
    everything = Backend(ls, min_confidence=0.0)
    try:
        connect(ls, project, everything)
        predict(ls, project, [tasks["short.png"]])
    finally:
        everything.server.close()
    scores = {r["value"]["keypointlabels"][0]: r["score"] for r in predictions(ls, tasks["short.png"])[0]["result"]}
    assert scores["nose"] < 0.5 <= min(scores["left eye"], scores["right eye"])
    project, tasks = new_project(ls, images)
    annotate(ls, tasks["example.png"], [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)])
    connect(ls, project, backend)  # min_confidence 0.5
    predict(ls, project, [tasks["short.png"]])
    check_points(predictions(ls, tasks["short.png"])[0], (0, 0), labels=("left eye", "right eye"), size=(320, 200))


def test_a_project_without_keypoint_labels_gets_empty_predictions(label_studio, backend):
    ls = label_studio
    project, tasks = new_project(ls, {"a.png": crop_png(EXAMPLES[0]), "b.png": crop_png(TARGETS[0])}, BOXES_ONLY)
    annotate(ls, tasks["a.png"], [face_box(EXAMPLES[0])])
    connect(ls, project, backend)
    predict(ls, project, [tasks["b.png"]])
    assert [p["result"] for p in predictions(ls, tasks["b.png"])] == [[]]
    assert any(
        line.startswith(f"project {project}: the labelling config has no KeyPointLabels") for line in backend.lines
    )
    assert backend.healthy()


def test_an_image_that_cannot_be_read_gets_an_empty_prediction(label_studio, backend):
    ls = label_studio
    project, tasks = new_project(ls, example_images())
    annotate(ls, tasks["example0.png"], [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)])
    missing = ls.api("POST", f"/api/projects/{project}/import", [{"image": "/data/upload/999/missing.png"}])
    assert missing["task_count"] == 1
    lost = max(task["id"] for task in ls.api("GET", f"/api/tasks?project={project}&page_size=100")["tasks"])
    connect(ls, project, backend)
    predict(ls, project, [lost, tasks["target0.png"]])
    assert [p["result"] for p in predictions(ls, lost)] == [[]]
    check_points(predictions(ls, tasks["target0.png"])[0], TARGETS[0])
    assert any(
        line.startswith(f"project {project}, task {lost}: cannot read its image: http://127.0.0.1:")
        and "/data/upload/999/missing.png: HTTP " in line
        for line in backend.lines
    ), backend.lines
    assert backend.healthy()


def test_a_label_the_config_does_not_have_is_said_and_left_out(label_studio, backend):
    ls = label_studio
    project, tasks = new_project(ls, example_images())
    tail = {
        **keypoint("nose", EXAMPLES[0], "t"),
        "value": {"x": 5.0, "y": 5.0, "width": 0.75, "keypointlabels": ["tail"]},
    }
    annotate(
        ls, tasks["example0.png"], [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)] + [tail]
    )
    connect(ls, project, backend)
    predict(ls, project, [tasks["target0.png"]])
    check_points(predictions(ls, tasks["target0.png"])[0], TARGETS[0])
    assert any(
        line.startswith(
            f"project {project}, task {tasks['example0.png']}: keypoint label 'tail' is not in the labelling config"
        )
        for line in backend.lines
    )


def test_a_key_without_rights_gives_empty_predictions(label_studio):
    ls = label_studio
    project, tasks = new_project(ls, example_images())
    annotate(ls, tasks["example0.png"], [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)])
    refused = Backend(ls, api_key="not-a-key-of-this-label-studio")
    try:
        connect(ls, project, refused)
        predict(ls, project, [tasks["target0.png"]])
        assert [p["result"] for p in predictions(ls, tasks["target0.png"])] == [[]]
        assert any(
            line.startswith(f"project {project}: cannot read its examples: ")
            and "Label Studio refused the key (HTTP 401)" in line
            for line in refused.lines
        )
        assert refused.healthy()
    finally:
        refused.server.close()


def test_a_personal_access_token_works(label_studio):
    ls = label_studio
    token = ls.api("POST", "/api/token/")["token"]
    project, tasks = new_project(ls, example_images())
    annotate(ls, tasks["example0.png"], [keypoint(label, EXAMPLES[0], f"k{k}") for k, label in enumerate(LABELS)])
    with_token = Backend(ls, api_key=token)
    try:
        connect(ls, project, with_token)
        predict(ls, project, [tasks["target1.png"]])
    finally:
        with_token.server.close()
    check_points(predictions(ls, tasks["target1.png"])[0], TARGETS[1])
