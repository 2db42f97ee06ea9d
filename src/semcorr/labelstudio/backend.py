"""The backend's work, free of HTTP (:mod:`.server` carries it): per project, the examples read from
Label Studio (refreshed when a webhook says annotations changed) and predictions for tasks from them
by label transfer (:class:`~semcorr.transfer.labeller.KeypointLabeller`).

Label Studio asks ``/setup`` before every batch of predictions and skips tasks that already have a
prediction of the ``model_version`` it gets back, so the version names the model and a digest of the
examples: new or changed examples make Label Studio ask again. Nothing a project or a task holds
stops the backend: what cannot be used is one line in the log, and a task that cannot be predicted
gets an empty prediction.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import torch

from ..errors import InputError, SemcorrError
from ..features.base import FeatureMap
from ..images import load_image
from ..lru import LRU
from ..matching.matcher import Matcher
from ..transfer.labeller import KeypointLabeller, TransferSettings
from .client import LabelStudioClient, LabelStudioError
from .project import (
    DEFAULT_POINT_SIZE,
    KeypointConfig,
    TaskExample,
    examples_digest,
    project_examples,
    read_label_config,
)
from .settings import LabelStudioSettings

# Webhook actions after which a project's examples are read again (Label Studio 1.23 sends
# ANNOTATIONS_DELETED for deletions; its SDK names ANNOTATION_DELETED).
CHANGES = frozenset(
    {
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATION_DELETED",
        "ANNOTATIONS_CREATED",
        "ANNOTATIONS_DELETED",
        "TASKS_DELETED",
        "PROJECT_UPDATED",
        "START_TRAINING",
    }
)


@dataclass
class ProjectState:
    """What the backend knows of one project."""

    id: int
    client: LabelStudioClient | None = None
    schema: str | None = None
    examples: tuple[TaskExample, ...] = ()
    digest: str | None = None
    stale: bool = True
    labeller: tuple[str, KeypointLabeller, tuple[float, ...]] | None = None  # (digest, labeller, point sizes)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LabelStudioBackend:
    """Keypoint predictions for Label Studio projects.

    Args:
        matcher: the model and how points are matched.
        settings: where Label Studio is, the key, the limits and ``min_confidence``.
        log: told one line per thing that could not be used.
    """

    def __init__(self, matcher: Matcher, settings: LabelStudioSettings, log: Callable[[str], None] = print) -> None:
        self.matcher = matcher
        self.settings = settings
        self.log = log
        self.model = matcher.extractor.name
        self.transfer = TransferSettings(match=matcher.settings, min_confidence=settings.min_confidence)
        self._projects: dict[int, ProjectState] = {}
        self._features: LRU[str, FeatureMap] = LRU(settings.cached_images)
        self._model_lock = threading.Lock()
        self._folder = tempfile.TemporaryDirectory(prefix="semcorr-label-studio-")
        self.extractions = 0

    def close(self) -> None:
        self._folder.cleanup()

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP",
            "model_class": "semcorr",
            "model": self.model,
            "random_weights": self.matcher.extractor.random_weights,
        }

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/setup``: remember where the project's Label Studio is; read its examples if they changed.
        ``{"project": "ID.TIMESTAMP", "schema": config, "hostname", "access_token"}`` -> ``{"model_version"}``."""
        project = self._project(body.get("project"))
        with project.lock:
            _set_schema(project, body.get("schema"))
            project.client = self._client(project, body.get("hostname"), body.get("access_token"))
        self._refresh(project)
        return {"model_version": self.version(project)}

    def webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/webhook``: an annotation (or the project) changed: read the examples again when next asked."""
        found = body.get("project")
        if body.get("action") not in CHANGES or not isinstance(found, dict):
            return {"status": "ok"}
        project_id = found.get("id")
        project = self._projects.get(project_id) if isinstance(project_id, int) else None
        if project is not None:
            project.stale = True
            with project.lock:
                _set_schema(project, found.get("label_config"))
        return {"status": "ok"}

    def versions(self) -> dict[str, Any]:
        return {"versions": sorted({self.version(p) for p in self._projects.values()})}

    def version(self, project: ProjectState) -> str:
        return f"semcorr-{self.model}-{project.digest or 'no-examples'}"

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/predict``: ``{"tasks": [...], "project": "ID.TIMESTAMP", "label_config": xml}`` ->
        ``{"results": [{"result": [keypoint regions], "score", "model_version"}, one per task]}``."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
            raise InputError("request field 'tasks' must be a list of tasks")
        project = self._project(body.get("project"))
        with project.lock:
            _set_schema(project, body.get("label_config"))
        if project.client is None:
            project.client = self._client(project, None, None)
        self._refresh(project)
        try:
            config = read_label_config(project.schema or "")
        except InputError as error:
            self.log(f"project {project.id}: {error}; every prediction is empty")
            return self._answer(project, [[] for _ in tasks])
        with self._model_lock:
            regions = self._label(project, config, tasks)
        return self._answer(project, regions)

    def _answer(self, project: ProjectState, regions: Sequence[list[dict[str, Any]]]) -> dict[str, Any]:
        version = self.version(project)
        results = []
        for result in regions:
            scores = [region["score"] for region in result]
            results.append(
                {"result": result, "score": sum(scores) / len(scores) if scores else 0.0, "model_version": version}
            )
        return {"results": results, "model_version": version}

    def _project(self, value: Any) -> ProjectState:
        """The state of the project ``"ID.TIMESTAMP"`` (or ``ID``) names."""
        text = str(value if value is not None else "")
        head = text.split(".", 1)[0]
        if not head.isdigit() or len(head) > 12:
            raise InputError(f"request field 'project' must be Label Studio's project id, not {text[:40]!r}")
        return self._projects.setdefault(int(head), ProjectState(int(head)))

    def _client(self, project: ProjectState, hostname: Any, token: Any) -> LabelStudioClient | None:
        """The client for a project: the configured address and key, else those Label Studio gave in
        ``/setup`` (a configured key is never sent to an address a request names)."""
        url = self.settings.url or (hostname if isinstance(hostname, str) and hostname else None)
        key = self.settings.api_key or (token if isinstance(token, str) and token else None)
        if url is None or key is None:
            if project.client is None:
                self.log(
                    f"project {project.id}: no Label Studio address and key yet (give --url and "
                    "LABEL_STUDIO_API_KEY, or connect the backend in Label Studio)"
                )
            return project.client
        if project.client is not None and project.client.uses(url, key):
            return project.client
        try:
            return LabelStudioClient(url, key)
        except LabelStudioError as error:
            self.log(f"project {project.id}: {error}")
            return project.client

    def _refresh(self, project: ProjectState) -> None:
        """Read the project's examples again, if a webhook (or the first call) asked for it."""
        if not project.stale or project.client is None or project.schema is None:
            return
        with project.lock:
            if not project.stale:
                return
            try:
                config = read_label_config(project.schema)
                tasks = project.client.annotated_tasks(project.id)
            except SemcorrError as error:
                self.log(f"project {project.id}: cannot read its examples: {error}")
                return
            project.stale = False
            project.examples = project_examples(tasks, config, lambda line: self.log(f"project {project.id}, {line}"))
            project.digest = examples_digest(config, project.examples) if project.examples else None

    def _label(
        self, project: ProjectState, config: KeypointConfig, tasks: Sequence[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        """Each task's keypoint regions (empty where it cannot be labelled, with a line to the log)."""
        empty: list[list[dict[str, Any]]] = [[] for _ in tasks]
        if project.client is None:
            return empty
        labeller = self._labeller(project, config)
        if labeller is None:
            return empty
        _, transfer, sizes = labeller
        maps: list[tuple[int, FeatureMap]] = []
        for index, task in enumerate(tasks):
            image = (task.get("data") or {}).get(config.image_key)
            try:
                if not isinstance(image, str) or not image:
                    raise InputError(f"no image in its data field {config.image_key!r}")
                maps.append((index, self._image_features(project.client, image)))
            except SemcorrError as error:
                self.log(
                    f"project {project.id}, task {task.get('id')}: cannot read its image: {error}; its "
                    "prediction is empty"
                )
        results = empty
        for start in range(0, len(maps), self.settings.batch_size):
            chunk = maps[start : start + self.settings.batch_size]
            votes = transfer.label(FeatureMap.join([fmap for _, fmap in chunk])).votes
            for (index, fmap), points, confidence in zip(chunk, votes.points, votes.confidence, strict=True):
                height, width = fmap.geometries[0].original_size
                results[index] = self._regions(config, points.tolist(), confidence.tolist(), (width, height), sizes)
        return results

    def _regions(
        self,
        config: KeypointConfig,
        points: list[list[float]],
        confidence: list[float],
        size: tuple[int, int],
        point_sizes: tuple[float, ...],
    ) -> list[dict[str, Any]]:
        """Label Studio's keypoint regions: one per label whose confidence reaches ``min_confidence``."""
        width, height = size
        regions = []
        for k, (label, (x, y), score) in enumerate(zip(config.labels, points, confidence, strict=True)):
            if score < self.settings.min_confidence or score <= 0:
                continue
            regions.append(
                {
                    "id": f"semcorr-{k}",
                    "from_name": config.from_name,
                    "to_name": config.to_name,
                    "type": "keypointlabels",
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {
                        "x": 100.0 * x / width,
                        "y": 100.0 * y / height,
                        "width": point_sizes[k],
                        "keypointlabels": [label],
                    },
                    "score": round(float(score), 4),
                }
            )
        return regions

    def _labeller(
        self, project: ProjectState, config: KeypointConfig
    ) -> tuple[str, KeypointLabeller, tuple[float, ...]] | None:
        """The labeller of the project's examples (kept until they or the labels change: the digest
        covers both)."""
        key = project.digest
        if key is not None and project.labeller is not None and project.labeller[0] == key:
            return project.labeller
        examples = project.examples
        if key is None or not examples:
            self.log(f"project {project.id}: no annotated tasks with keypoints yet; every prediction is empty")
            return None
        maps, points, labelled = [], [], []
        client = project.client
        assert client is not None, "examples are read through the project's client"
        for example in examples:
            try:
                fmap = self._image_features(client, example.image)
            except SemcorrError as error:
                self.log(f"project {project.id}, task {example.task}: cannot read its image: {error}; not an example")
                continue
            height, width = fmap.geometries[0].original_size
            maps.append(fmap)
            points.append([[x * width / 100.0, y * height / 100.0] for x, y in example.points])
            labelled.append(list(example.labelled))
        if not maps:
            return None
        sizes = tuple(
            next((e.sizes[k] for e in examples if e.labelled[k]), DEFAULT_POINT_SIZE) for k in range(len(config.labels))
        )
        labeller = KeypointLabeller(FeatureMap.join(maps), torch.tensor(points), torch.tensor(labelled), self.transfer)
        project.labeller = (key, labeller, sizes)
        return project.labeller

    def _image_features(self, client: LabelStudioClient, image: str) -> FeatureMap:
        """The features of a task's image (read with the client, within the limits), kept per image."""
        url = urljoin(client.url + "/", image)
        kept = self._features.get(url)
        if kept is not None:
            return kept
        data = client.image(image, self.settings.max_upload_bytes)
        descriptor, path = tempfile.mkstemp(dir=self._folder.name)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            pixels = load_image(path, max_pixels=self.settings.max_pixels)
        except InputError as error:
            raise InputError(str(error).replace(path, image[:120])) from None
        finally:
            os.unlink(path)
        features = self.matcher.extractor.extract(pixels)
        self.extractions += 1
        return self._features.put(url, features)


def _set_schema(project: ProjectState, schema: Any) -> None:
    """Take the labelling config Label Studio sent (if it sent one); when it differs from the one
    the examples were read under, they are dropped and read again at the next request (their
    points follow the old config's labels). The caller holds ``project.lock``."""
    if isinstance(schema, str) and schema != project.schema:
        project.schema = schema
        project.examples, project.digest, project.labeller, project.stale = (), None, None, True
