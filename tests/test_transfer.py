"""``semcorr transfer`` and :func:`semcorr.transfer.transfer_keypoints` on real PF-WILLOW images with the
weight-free baseline: COCO output read back by pycocotools and by plain JSON, k examples against one,
confidence thresholding, left/right names on a mirrored image, unreadable images, resume after SIGKILL,
and bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, data_path
from PIL import Image
from pycocotools.coco import COCO

from semcorr.data.pfwillow import read_keypoints
from semcorr.errors import InputError
from semcorr.transfer import TransferSettings, read_examples, transfer_keypoints, vote_point, weighted_mode
from semcorr.transfer.leftright import left_right_partners, pairs_from_names
from semcorr.transfer.vote import combine_votes, majority_confidence

NAMES = [f"kp{i}" for i in range(10)]


def willow(subclass):
    """(sorted image paths, their (10, 2) keypoints) of a PF-WILLOW subclass."""
    folder = data_path("pf-willow", subclass)
    mats = sorted(folder.glob("*.mat"))
    return [m.with_suffix(".png") for m in mats], [read_keypoints(m) for m in mats]


def simple_examples(path, images, points):
    path.write_text(
        json.dumps(
            {str(image): {n: [float(x), float(y)] for n, (x, y) in zip(NAMES, p)} for image, p in zip(images, points)}
        )
    )
    return path


def coco_examples(path, images, points, skeleton=((1, 2), (2, 3))):
    data = {
        "images": [{"id": 10 + i, "file_name": image.name} for i, image in enumerate(images)],
        "annotations": [
            {
                "id": 100 + i,
                "image_id": 10 + i,
                "category_id": 7,
                "keypoints": [float(v) for x, y in p for v in (x, y, 2)],
            }
            for i, p in enumerate(points)
        ],
        "categories": [
            {
                "id": 7,
                "name": "car",
                "supercategory": "vehicle",
                "keypoints": NAMES,
                "skeleton": [list(b) for b in skeleton],
            }
        ],
    }
    path.write_text(json.dumps(data))
    return path


def pck(labels_file, images, points, alpha=0.1):
    """PCK@alpha (box of the true keypoints) of placed keypoints, read with pycocotools; unplaced count wrong."""
    coco = COCO(str(labels_file))
    by_name = {entry["file_name"]: entry["id"] for entry in coco.dataset["images"]}
    correct = total = 0
    for image, truth in zip(images, points):
        annotation = coco.loadAnns(coco.getAnnIds(imgIds=[by_name[image.name]]))[0]
        found = np.asarray(annotation["keypoints"], float).reshape(-1, 3)
        length = (truth.max(0) - truth.min(0)).max()
        distance = np.linalg.norm(found[:, :2] - truth, axis=1)
        correct += int(((distance <= alpha * length) & (found[:, 2] > 0)).sum())
        total += len(truth)
    return 100.0 * correct / total


class TestTransferOnPfWillow:
    def test_three_examples_beat_one_and_the_output_is_coco(self, cli, tmp_path):
        images, points = willow("car(M)")
        folder = images[0].parent
        one = simple_examples(tmp_path / "one.json", images[:1], points[:1])
        three = coco_examples(tmp_path / "three.json", images[:3], points[:3])
        results = {}
        for name, examples in (("one", one), ("three", three)):
            out = tmp_path / f"{name}.json"
            result = cli(
                "transfer",
                "--examples",
                examples,
                "--images",
                folder,
                "--out",
                out,
                "--model",
                "baseline",
                "--min-confidence",
                "0",
                "--quiet",
                "--batch-size",
                "4",
            )
            assert result.returncode == 0, result.stderr
            assert f"labelled {10 - (1 if name == 'one' else 3)} of 10 images" in result.stdout
            results[name] = out
        targets = slice(3, None)  # the images that are examples of neither run
        one_shot, three_shot = (pck(results[n], images[targets], points[targets]) for n in ("one", "three"))
        assert three_shot >= one_shot and three_shot > 15, (one_shot, three_shot)
        # read back independently of the writer: plain JSON, every image of the folder, COCO fields
        data = json.loads(results["three"].read_text())
        assert [i["file_name"] for i in data["images"]] == [p.name for p in images]
        assert data["categories"] == [
            {"id": 7, "name": "car", "supercategory": "vehicle", "keypoints": NAMES, "skeleton": [[1, 2], [2, 3]]}
        ]
        for image, annotation in zip(data["images"], data["annotations"]):
            assert annotation["image_id"] == image["id"] and annotation["category_id"] == 7
            assert len(annotation["keypoints"]) == 30 and len(annotation["keypoint_scores"]) == 10
            assert all(0 <= s <= 1 for s in annotation["keypoint_scores"])
            xs, ys = annotation["keypoints"][0::3], annotation["keypoints"][1::3]
            assert all(0 <= x <= image["width"] and 0 <= y <= image["height"] for x, y in zip(xs, ys))
        example = data["annotations"][1]  # an example keeps its own labels
        assert np.allclose(np.reshape(example["keypoints"], (-1, 3))[:, :2], points[1], atol=0.01)
        assert example["keypoint_scores"] == [1.0] * 10

    def test_below_min_confidence_is_not_visible_rather_than_placed(self, tmp_path):
        images, points = willow("car(M)")
        examples = simple_examples(tmp_path / "ex.json", images[:2], points[:2])
        summary = transfer_keypoints(
            examples,
            images[0].parent,
            tmp_path / "labels.json",
            model="baseline",
            settings=TransferSettings(min_confidence=0.3),
            progress=False,
        )
        data = json.loads((tmp_path / "labels.json").read_text())
        shown = hidden = 0
        for annotation in data["annotations"][2:]:
            triplets = np.reshape(annotation["keypoints"], (-1, 3))
            for (x, y, v), score in zip(triplets, annotation["keypoint_scores"]):
                if score >= 0.3:
                    assert v == 2
                    shown += 1
                else:
                    assert (x, y, v) == (0, 0, 0)
                    hidden += 1
            assert annotation["num_keypoints"] == int((triplets[:, 2] > 0).sum())
        assert shown and hidden
        assert summary["visible_fraction"] == pytest.approx((shown + 20) / 100, abs=1e-3)


class TestLeftRight:
    @pytest.mark.parametrize(
        "names, spec", [(("left_light", "right_light", "hub"), None), (("front", "back", "hub"), "file")]
    )
    def test_mirrored_image_gets_swapped_names(self, tmp_path, names, spec):
        images, points = willow("car(G)")
        source, rows = images[0], [0, 4, 7]
        chosen = points[0][rows]
        width = Image.open(source).width
        assert abs(chosen[0, 0] - chosen[1, 0]) > 0.1 * width
        folder = tmp_path / "images"
        folder.mkdir()
        Image.open(source).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirrored.png")
        examples = tmp_path / "ex.json"
        examples.write_text(json.dumps({str(source): {n: [float(x), float(y)] for n, (x, y) in zip(names, chosen)}}))
        left_right = None
        if spec == "file":
            left_right = str(tmp_path / "pairs.json")
            (tmp_path / "pairs.json").write_text(json.dumps({"front": "back"}))
        settings = TransferSettings(pose_align=True, min_confidence=0)
        transfer_keypoints(
            examples,
            folder,
            tmp_path / "labels.json",
            model="baseline",
            settings=settings,
            left_right=left_right,
            progress=False,
        )
        data = json.loads((tmp_path / "labels.json").read_text())
        found = np.reshape(data["annotations"][0]["keypoints"], (-1, 3))[:, :2]
        mirrored = np.stack([width - chosen[:, 0], chosen[:, 1]], axis=1)
        # the first name sits where the second one's part is in the mirror image, and the other way round
        assert np.linalg.norm(found[0] - mirrored[1]) < 0.02 * width
        assert np.linalg.norm(found[1] - mirrored[0]) < 0.02 * width
        assert np.linalg.norm(found[2] - mirrored[2]) < 0.02 * width
        assert data["info"]["left_right"] == [list(names[:2])]

    def test_names_rule_and_tables(self, tmp_path):
        names = ["left_eye", "right_eye", "nose", "L_paw", "R_paw", "leftEar", "rightEar", "lefty"]
        assert pairs_from_names(names) == [(0, 1), (3, 4), (5, 6)]
        partners, _ = left_right_partners("ap10k", [f"k{i}" for i in range(17)])
        assert partners[0] == 1 and partners[5] == 8 and partners[2] == 2
        with pytest.raises(InputError, match="spair:CATEGORY"):
            left_right_partners("pascal", names)
        (tmp_path / "bad.json").write_text(json.dumps({"left_eye": "tail"}))
        with pytest.raises(InputError, match="'tail' is not one of the examples' keypoints"):
            left_right_partners(str(tmp_path / "bad.json"), names)


class TestVotes:
    def votes(self, points, cycle):
        """(B=1, E, K=1, 2) votes, (1, E, 1) cycle confidences, all voting."""
        import torch

        points = torch.tensor(points, dtype=torch.float32)[None, :, None]
        return points, torch.tensor(cycle)[None, :, None], torch.ones(points.shape[:3], dtype=torch.bool)

    def test_three_agreeing_examples_outvote_two_disagreeing_ones(self):
        import torch

        majority = [[100.0, 100.0], [103.0, 100.0], [100.0, 103.0]]
        # the two others come back better (0.7 > 0.3) but each alone: support 0.9 against 0.7
        points, cycle, voted = self.votes(majority + [[300.0, 100.0], [100.0, 300.0]], [0.3, 0.3, 0.3, 0.7, 0.7])
        point = vote_point(points, cycle, voted, torch.tensor([400.0]), 0.05)[0, 0]
        assert (
            torch.linalg.norm(point - torch.tensor([101.0, 101.0])) < 1.0
        )  # the majority's mean (a median: 22 px off)
        # two that agree with each other against three that agree: the larger (weighted) side wins
        points, cycle, voted = self.votes(majority + [[300.0, 100.0], [302.0, 100.0]], [0.5] * 5)
        assert (
            torch.linalg.norm(
                vote_point(points, cycle, voted, torch.tensor([400.0]), 0.05)[0, 0] - torch.tensor([101.0, 101.0])
            )
            < 1.0
        )
        points, cycle, voted = self.votes(majority + [[300.0, 100.0], [302.0, 100.0]], [0.1, 0.1, 0.1, 0.9, 0.9])
        assert (
            torch.linalg.norm(
                vote_point(points, cycle, voted, torch.tensor([400.0]), 0.05)[0, 0] - torch.tensor([301.0, 100.0])
            )
            < 1.0
        )

    def test_one_vote_and_identical_votes_are_that_vote(self):
        import torch

        for points, cycle in (([[37.5, 80.25]], [0.7]), ([[37.5, 80.25]] * 4, [0.7, 0.2, 0.9, 0.01])):
            points, cycle, voted = self.votes(points, cycle)
            point = vote_point(points, cycle, voted, torch.tensor([400.0]), 0.05)
            assert torch.allclose(point, torch.tensor([[[37.5, 80.25]]]))
        far = weighted_mode(torch.tensor([[0.0, 0.0], [500.0, 0.0]]), torch.tensor([0.4, 0.6]), 10.0)
        assert torch.allclose(far, torch.tensor([500.0, 0.0]))  # no compromise between two lone votes

    def test_confidence_is_the_better_half_of_the_points_cycle_confidences(self):
        import torch

        back = torch.tensor(
            [[[0.9, 0.9, 0.9, 0.3], [0.8, 0.1, 0.1, 0.3], [0.1, 0.1, 0.1, 0.3], [0.5, 0.1, 0.7, 0.3]]]
        )  # (B=1, E=4, K=4)
        voted = torch.tensor(
            [
                [
                    [True, True, False, False],
                    [True, True, True, False],
                    [True, False, True, False],
                    [False, False, True, False],
                ]
            ]
        )
        confidence = majority_confidence(back, voted)[0]
        # K0: 3 voters (0.9, 0.8, 0.1): the best 2; K1: 2 voters: the best 1; K2: 3 voters (0.1, 0.1, 0.7):
        # the best 2; K3: nobody votes
        assert torch.allclose(confidence, torch.tensor([0.85, 0.9, 0.4, 0.0]))
        points, cycle, voted = self.votes([[50.0, 50.0], [52.0, 50.0], [200.0, 50.0]], [0.9, 0.8, 0.7])
        point = vote_point(points, cycle, voted, torch.tensor([400.0]), 0.05)
        votes = combine_votes(
            points, cycle, voted, point, torch.tensor([[[0.9], [0.8], [0.05]]]), torch.tensor([400.0]), 0.05
        )
        assert votes.points[0, 0, 0].item() == pytest.approx(51, abs=1.5) and votes.votes.item() == 3
        assert votes.confidence.item() == pytest.approx(0.85)  # the far vote neither moves nor sinks the point
        assert 0.6 < votes.agreement.item() < 0.75 and votes.cycle.item() == pytest.approx(0.8)
        none = combine_votes(points, cycle, torch.zeros_like(voted), point, cycle, torch.tensor([400.0]), 0.05)
        assert none.confidence.item() == 0 and none.votes.item() == 0 and none.points.abs().sum() == 0

    def test_identical_examples_label_as_one_example(self):
        import torch

        from semcorr.features import build_extractor
        from semcorr.images import load_image
        from semcorr.transfer import KeypointLabeller

        images, points = willow("car(S)")
        extractor = build_extractor("baseline", input_size=224)
        example, targets = (
            extractor.extract([load_image(images[0])]),
            extractor.extract([load_image(p) for p in images[1:4]]),
        )
        settings = TransferSettings()
        labelled = torch.ones(1, 10, dtype=torch.bool)
        one = KeypointLabeller(example, torch.from_numpy(points[0])[None].float(), labelled, settings).label(targets)
        copies = type(example)(
            example.features.repeat(3, 1, 1, 1), example.geometries * 3, example.model, example.random_weights
        )
        three = KeypointLabeller(
            copies, torch.from_numpy(points[0])[None].float().repeat(3, 1, 1), labelled.repeat(3, 1), settings
        ).label(targets)
        assert torch.allclose(three.votes.points, one.votes.points, atol=1e-3)
        assert torch.allclose(three.votes.confidence, one.votes.confidence, atol=1e-4)
        assert torch.allclose(one.votes.confidence, one.votes.cycle, atol=1e-4)  # one example: its cycle confidence
        assert (three.votes.votes == 3).all() and 0 < one.votes.confidence.mean() < 1


class TestFolders:
    def test_unreadable_image_is_reported_and_the_rest_labelled(self, cli, tmp_path):
        images, points = willow("duck(S)")
        folder = tmp_path / "images"
        folder.mkdir()
        for image in images[1:4]:
            (folder / image.name).symlink_to(image)
        (folder / "broken.png").write_bytes(images[4].read_bytes()[:400])
        examples = simple_examples(tmp_path / "ex.json", images[:1], points[:1])
        out = tmp_path / "labels.json"
        result = cli(
            "transfer", "--examples", examples, "--images", folder, "--out", out, "--model", "baseline", "--quiet"
        )
        assert result.returncode == 0, result.stderr
        assert "broken.png" in result.stderr and "skipped 1 unreadable image" in result.stderr
        data = json.loads(out.read_text())
        assert [i["file_name"] for i in data["images"]] == [p.name for p in images[1:4]]
        assert data["skipped"][0]["file_name"] == "broken.png" and "corrupt" in data["skipped"][0]["error"]
        stopped = cli(
            "transfer",
            "--examples",
            examples,
            "--images",
            folder,
            "--out",
            tmp_path / "stop.json",
            "--model",
            "baseline",
            "--quiet",
            "--on-error",
            "stop",
        )
        lines = stopped.stderr.strip().splitlines()
        assert stopped.returncode == 1 and len(lines) == 1 and "broken.png" in lines[0]
        assert not (tmp_path / "stop.json").exists()

    def test_killed_run_resumes_to_the_same_file(self, tmp_path):
        folder = tmp_path / "images"
        folder.mkdir()
        for subclass in ("car(S)", "duck(S)"):
            for image in willow(subclass)[0][:8]:
                (folder / f"{subclass[:3]}-{image.name}").symlink_to(image)
        images, points = willow("car(S)")
        examples = simple_examples(tmp_path / "ex.json", images[8:], points[8:])
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}

        def command(out):
            return [
                sys.executable,
                "-m",
                "semcorr.cli",
                "transfer",
                "--examples",
                str(examples),
                "--images",
                str(folder),
                "--out",
                str(out),
                "--model",
                "baseline",
                "--batch-size",
                "1",
                "--quiet",
            ]

        whole = subprocess.run(command(tmp_path / "whole.json"), env=env, capture_output=True, text=True, timeout=300)
        assert whole.returncode == 0, whole.stderr
        resumed = tmp_path / "resumed.json"
        partial = tmp_path / "resumed.json.partial"
        process = subprocess.Popen(command(resumed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while not (partial / "part-000003.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not resumed.exists() and len(list(partial.glob("part-*.json"))) < 16
        again = subprocess.run(command(resumed), env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert "done by an earlier run" in again.stdout
        assert resumed.read_bytes() == (tmp_path / "whole.json").read_bytes()
        assert not partial.exists()


class TestResume:
    def test_a_run_with_other_settings_is_refused_and_the_same_resumes(self, tmp_path):
        from semcorr.transfer.resume import PartialRun

        identity = {"left_right": [("left_eye", "right_eye")], "settings": {"min_confidence": 0.5}}
        with PartialRun(tmp_path / "labels.json", identity) as partial:
            partial.add([{"file_name": "a.png", "error": "broken"}])
        with PartialRun(tmp_path / "labels.json", identity) as partial:  # tuples read back as lists still match
            assert list(partial.records) == ["a.png"]
        with pytest.raises(InputError, match="labels.json.partial: holds a run with other examples"):
            with PartialRun(tmp_path / "labels.json", {**identity, "settings": {"min_confidence": 0.3}}):
                pass
        with PartialRun(tmp_path / "labels.json", identity) as partial:  # the refusal released the lock
            partial.finish()
        assert not (tmp_path / "labels.json.partial").exists()

    def test_a_second_run_on_the_same_output_is_refused(self, tmp_path):
        from semcorr.transfer.resume import PartialRun

        with PartialRun(tmp_path / "labels.json", {}):
            with pytest.raises(InputError, match="another semcorr transfer is writing it"):
                with PartialRun(tmp_path / "labels.json", {}):
                    pass


class TestBadInput:
    def run(self, cli, tmp_path, examples, folder=None, out=None, extra=()):
        folder = folder or willow("car(G)")[0][0].parent
        result = cli(
            "transfer",
            "--examples",
            examples,
            "--images",
            folder,
            "--out",
            out or tmp_path / "o.json",
            "--model",
            "baseline",
            "--quiet",
            *extra,
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        return lines[0]

    def test_unknown_image(self, cli, tmp_path):
        images, points = willow("car(G)")
        path = tmp_path / "ex.json"
        path.write_text(json.dumps({"no-such-car.png": {"a": [1, 2]}}))
        assert "image 'no-such-car.png' not found" in self.run(cli, tmp_path, path)
        coco_examples(path, images[:1], points[:1])
        data = json.loads(path.read_text())
        data["annotations"][0]["image_id"] = 99
        path.write_text(json.dumps(data))
        assert "annotation 100: image_id 99 is not among the 'images'" in self.run(cli, tmp_path, path)

    def test_keypoint_outside_its_image(self, cli, tmp_path):
        images, _ = willow("car(G)")
        width, height = Image.open(images[0]).size
        path = tmp_path / "ex.json"
        path.write_text(json.dumps({images[0].name: {"hub": [10, 10], "roof": [width + 3, 5]}}))
        line = self.run(cli, tmp_path, path)
        assert "'roof'" in line and "outside its image" in line and images[0].name in line

    def test_mismatched_name_lists(self, cli, tmp_path):
        images, points = willow("car(G)")
        path = tmp_path / "ex.json"
        path.write_text(
            json.dumps(
                {images[0].name: {"hub": [10, 10], "roof": [5, 5]}, images[1].name: {"hub": [10, 10], "rooof": [5, 5]}}
            )
        )
        line = self.run(cli, tmp_path, path)
        assert images[1].name in line and "missing roof" in line and "extra rooof" in line
        coco_examples(path, images[:1], points[:1])
        data = json.loads(path.read_text())
        data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-3]
        path.write_text(json.dumps(data))
        assert "'keypoints' has 9 x, y, v triplets but category 7 names 10 keypoints" in self.run(cli, tmp_path, path)

    def test_empty_folder(self, cli, tmp_path):
        images, points = willow("car(G)")
        examples = simple_examples(tmp_path / "ex.json", images[:1], points[:1])
        (tmp_path / "empty").mkdir()
        assert "empty: no images found" in self.run(cli, tmp_path, examples, folder=tmp_path / "empty")

    def test_outputs_are_checked_before_the_model_is_loaded(self, cli, tmp_path):
        images, points = willow("car(G)")
        examples = simple_examples(tmp_path / "ex.json", images[:1], points[:1])
        line = self.run(
            cli,
            tmp_path,
            examples,
            out=tmp_path / "missing" / "o.json",
            extra=("--model", "dinov2-b-reg", "--weights", str(tmp_path / "no-weights")),
        )
        assert "the folder" in line and "does not exist" in line
        line = self.run(cli, tmp_path, examples, out=tmp_path / "o.txt")
        assert "must be a .json file" in line

    def test_an_extractor_takes_no_preset_options(self, tmp_path):
        from semcorr.features import build_extractor

        images, points = willow("car(G)")
        examples = simple_examples(tmp_path / "ex.json", images[:1], points[:1])
        with pytest.raises(InputError, match="apply to a preset name"):
            transfer_keypoints(
                examples,
                images[0].parent,
                tmp_path / "o.json",
                model=build_extractor("baseline"),
                random_weights=True,
                progress=False,
            )

    def test_examples_are_read_before_any_model(self, tmp_path):
        with pytest.raises(InputError, match="not found"):
            read_examples(tmp_path / "none.json")
