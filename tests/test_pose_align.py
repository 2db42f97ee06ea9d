"""Pose alignment (semcorr.matching.pose_align): the flip rule, Matcher.match(pose_align=True), the feature
store's mirrored images, and ``semcorr eval/match --pose-align`` on real PF-WILLOW images."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import data_path
from PIL import Image

from semcorr import FeatureMap, ImageGeometry, Matcher, build_extractor, load_image
from semcorr.cli import main
from semcorr.data import load_pf_willow, load_spair
from semcorr.data.symmetry import AP10K_MIRROR_PAIRS, SPAIR_MIRROR_PAIRS, mirror_partner_rows
from semcorr.eval import FeatureCache
from semcorr.eval.runner import _predict, predict
from semcorr.matching import MatchSettings
from semcorr.matching.pose_align import align_sources, choose_orientation, flip_image, flip_points, mutual_nn_distance
from semcorr.store import FeatureFolder

pytestmark = pytest.mark.usefixtures("one_thread")


def mirror_file(path, folder):
    """A left-right mirrored copy of an image file (PNG, lossless)."""
    out = folder / f"{path.stem}-mirrored.png"
    Image.open(path).transpose(Image.FLIP_LEFT_RIGHT).save(out)
    return out


def mirrored_pair(pair, folder):
    """The pair (A, mirror(A)) with its known answer: source point (x, y) is at (W - x, y)."""
    width = pair.source_size[1]
    x1, y1, x2, y2 = pair.source_box
    target = pair.source_points.copy()
    target[:, 0] = width - target[:, 0]
    return dataclasses.replace(
        pair,
        id=pair.id + ":mirrored",
        target_image=mirror_file(pair.source_image, folder),
        target_points=target,
        target_visible=pair.source_visible,
        target_box=[width - x2, y1, width - x1, y2],
        target_size=pair.source_size,
    )


def crop(pixels, left=0.08, top=0.05, right=0.95, bottom=0.92):
    """A slightly cropped (hence shifted and rescaled) copy of a (3, H, W) image."""
    height, width = pixels.shape[-2:]
    return pixels[:, int(top * height) : int(bottom * height), int(left * width) : int(right * width)]


@pytest.fixture(scope="module")
def willow():
    return load_pf_willow(data_path("pf-willow"))


def feature_map(features, size=(20, 30)):
    geometries = tuple(ImageGeometry.fit(size, 56) for _ in range(features.shape[0]))
    return FeatureMap(torch.nn.functional.normalize(features, dim=1), geometries, "synthetic")


class TestFlip:
    def test_points_known_answer_and_own_inverse(self):
        points = torch.tensor([[0.0, 5.0], [10.5, 2.0], [300.0, 1.0]])
        mirrored = flip_points(points, 300)
        assert torch.equal(mirrored, torch.tensor([[300.0, 5.0], [289.5, 2.0], [0.0, 1.0]]))
        assert torch.equal(flip_points(mirrored, 300), points)

    def test_image_and_points_agree(self):
        """A bright pixel in column c (centre c + 0.5) lands in column W - 1 - c, centre W - (c + 0.5)."""
        image = torch.zeros(3, 4, 7)
        image[:, 1, 2] = 1.0
        mirrored = flip_image(image)
        row, column = (mirrored[0] == 1).nonzero()[0].tolist()
        assert (row, column) == (1, 4)
        assert flip_points(torch.tensor([2.5, 1.5]), 7).tolist() == [column + 0.5, row + 0.5]
        assert torch.equal(flip_image(mirrored), image)

    def test_bad_shapes_are_named(self):
        with pytest.raises(ValueError, match="points"):
            flip_points(torch.zeros(4, 3), 10)
        with pytest.raises(ValueError, match="pixels"):
            flip_image(torch.zeros(5))


class TestRule:
    def test_mutual_nn_distance(self):
        features = torch.randn(8, 5, 6)
        assert float(mutual_nn_distance(features, features)) == pytest.approx(0.0, abs=1e-3)
        other = torch.randn(8, 4, 4)
        distance = float(mutual_nn_distance(features, other))
        assert 0.0 < distance <= 2.0
        # the valid masks decide which cells take part: keep only a cell equal to one of the other map's
        valid = torch.zeros(5, 6, dtype=torch.bool)
        valid[2, 3] = True
        features[:, 2, 3] = other[:, 1, 1]
        assert float(mutual_nn_distance(features, other, valid)) == pytest.approx(0.0, abs=1e-3)
        with pytest.raises(ValueError, match="channels"):
            mutual_nn_distance(features, torch.randn(4, 5, 6))
        with pytest.raises(ValueError, match="source_valid"):
            mutual_nn_distance(features, other, torch.ones(3, 3, dtype=torch.bool))

    def test_flip_only_when_strictly_better(self):
        a, b = torch.randn(2, 16, 6, 8).unbind(0)
        source, target = feature_map(torch.stack([a, a])), feature_map(torch.stack([b, b]))
        flipped = feature_map(torch.stack([b, a]))  # pair 0: the mirror equals the target; pair 1: a tie
        orientation = choose_orientation(source, flipped, target)
        assert orientation.flipped.tolist() == [True, False]
        assert float(orientation.distance_flipped[0]) == pytest.approx(0.0, abs=1e-3)
        assert torch.equal(orientation.distance[1], orientation.distance_flipped[1])

    def test_align_sources_mirrors_only_flipped_queries(self):
        a, b = torch.randn(2, 16, 6, 8).unbind(0)
        source, target = feature_map(torch.stack([a, a])), feature_map(torch.stack([b, b]))
        flipped = feature_map(torch.stack([b, a]))
        points = torch.tensor([[[3.0, 4.0]], [[3.0, 4.0]]])
        aligned, query, _ = align_sources(source, flipped, target, points)
        assert torch.equal(query, torch.tensor([[[27.0, 4.0]], [[3.0, 4.0]]]))  # width 30
        assert torch.equal(aligned.features[0], flipped.features[0]) and torch.equal(
            aligned.features[1], source.features[1]
        )
        with pytest.raises(ValueError, match="points"):
            align_sources(source, flipped, target, points[0])


class TestMatcherOnRealImages:
    def test_mirrored_pair_flips_and_lands_on_the_mirrored_points(self, willow):
        pair = willow[0]
        image = load_image(pair.source_image)
        points, _ = pair.counted_points()
        truth = points.copy()
        truth[:, 0] = pair.source_size[1] - truth[:, 0]
        matcher = Matcher("baseline")
        out = matcher.match(image, flip_image(image), points.tolist(), pose_align=True)
        assert out["pose_align"]["flipped"] and out["pose_align"]["distance_flipped"] < out["pose_align"]["distance"]
        assert np.allclose([m["source"] for m in out["matches"]], points, atol=1e-3)  # A's own pixels
        found = np.array([m["target"] for m in out["matches"]])
        assert np.abs(found - truth).max() < 6  # under one 60x60 cell of a 300-pixel-wide image
        plain = np.array([m["target"] for m in matcher.match(image, flip_image(image), points.tolist())["matches"]])
        assert np.linalg.norm(plain - truth, axis=1).mean() > 3 * np.linalg.norm(found - truth, axis=1).mean()

    @pytest.mark.parametrize("index", [0, 270])  # a car and a duck
    def test_mirrored_crop_flips_and_unmirrored_crop_does_not(self, willow, index):
        image = load_image(willow[index].source_image)
        matcher = Matcher("baseline")
        mirrored = matcher.match(image, flip_image(crop(image)), [[150, 100]], pose_align=True)["pose_align"]
        kept = matcher.match(image, crop(image), [[150, 100]], pose_align=True)["pose_align"]
        assert mirrored["flipped"] and not kept["flipped"]
        assert kept["distance"] < kept["distance_flipped"]


class TestEvaluation:
    def test_pipeline_flips_mirrored_pairs_only(self, willow, tmp_path):
        """Two (A, mirror(A)) pairs and an (A, A) pair through the feature store and predict()."""
        mirrored = [mirrored_pair(p, tmp_path) for p in (willow[0], willow[270])]
        same = [
            dataclasses.replace(
                p,
                target_image=p.source_image,
                target_points=p.source_points,
                target_box=p.source_box,
                target_size=p.source_size,
            )
            for p in (willow[0],)
        ]
        pairs = mirrored + same
        sources = [p.source_image for p in pairs]
        extractor = build_extractor("baseline")
        with FeatureCache(extractor, mode="disk", progress=False) as store:
            store.compute(sources + [p.target_image for p in pairs], flipped=sources)
            assert store.computed == 4 + 2  # 2 sources, 2 mirrored copies as targets; each source mirrored
            keys = FeatureFolder(store.folder).keys()
            assert sum(key.endswith("|mirrored") for key in keys) == 2 and len(keys) == 6
            stored, geometry = store.get(willow[0].source_image, flipped=True)
            fresh = extractor.extract(flip_image(load_image(willow[0].source_image)))
            assert torch.allclose(stored.float(), fresh.features[0], atol=2e-3) and geometry == fresh.geometries[0]
            assert not torch.equal(stored, store.get(willow[0].source_image)[0])
            found, flipped = _predict(store, pairs, MatchSettings(), 2, False, True)
            assert flipped == [True, True, False]
            assert all(len(f) == 10 for f in found)
            for pair, points in zip(pairs, found):
                assert np.abs(points - pair.counted_points()[1]).max() < 6
            plain = predict(store, pairs, MatchSettings(), progress=False)
            assert np.array_equal(plain[2], found[2])  # unflipped pairs are matched as without pose alignment

    def test_eval_command_records_flips(self, tmp_path, capsys):
        out, predictions = tmp_path / "result.json", tmp_path / "predictions.json"
        args = [
            "eval",
            "pf-willow",
            "--data-root",
            str(data_path("pf-willow")),
            "--model",
            "baseline",
            "--limit",
            "3",
            "--quiet",
            "--pose-align",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--save-predictions",
            str(predictions),
        ]
        assert main(args) == 0
        summary, records = json.loads(out.read_text()), json.loads(predictions.read_text())
        alignment = summary["pose_align"]
        assert alignment["enabled"] and summary["settings"]["pose_align"] is True
        assert alignment["n_mirrored_images"] == 1 and "mutual nearest neighbours" in alignment["rule"]
        assert alignment["n_flipped"] == sum(r["flipped"] for r in records) and 0 <= alignment["n_flipped"] <= 3
        assert summary["timing"]["images_computed"] == 5  # 4 images and 1 mirrored source
        assert f"pose alignment: {alignment['n_flipped']} of 3 pairs" in capsys.readouterr().out
        (store,) = [FeatureFolder(config.parent) for config in (tmp_path / "cache").glob("*/config.json")]
        assert sum(key.endswith("|mirrored") for key in store.keys()) == 1 and len(store) == 5
        assert main(args) == 0  # the second run reads the mirrored features back from disk
        again = json.loads(out.read_text())
        assert again["timing"]["images_computed"] == 0
        assert again["pose_align"] == alignment and again["pck"] == summary["pck"]

    def test_match_command(self, willow, tmp_path):
        pair = willow[0]
        target, out = mirror_file(pair.source_image, tmp_path), tmp_path / "match.json"
        x, y = pair.counted_points()[0][0]
        assert (
            main(
                [
                    "match",
                    str(pair.source_image),
                    str(target),
                    "--points",
                    f"{x},{y}",
                    "--model",
                    "baseline",
                    "--pose-align",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        result = json.loads(out.read_text())
        assert result["pose_align"]["flipped"]
        assert result["matches"][0]["target"] == pytest.approx([pair.source_size[1] - x, y], abs=6)


class TestMirrorPartners:
    """Left/right partners (semcorr.data.symmetry): a flipped source looks up each keypoint at its
    partner's mirrored position, as DistillDIFT does on SPair-71k."""

    def test_rows_swap_only_where_both_partners_are_counted(self, willow):
        cat = dataclasses.replace(
            willow[0],
            benchmark="spair",
            category="cat",
            keypoint_ids=np.array([0, 1, 8, 2, 5, 4, 7, 6, 9, 3]),
            target_visible=np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool),
        )
        # counted ids 0 1 8 2 5 4 7 6 9 (3 hidden in the target): 0-1, 4-5 and 6-7 swap; 2's partner 3 is not counted
        assert mirror_partner_rows(cat).tolist() == [1, 0, 2, 3, 5, 4, 7, 6, 8]
        assert mirror_partner_rows(willow[0]).tolist() == list(range(10))  # PF-WILLOW: no left/right

    def test_ap10k_pairs_follow_the_keypoint_names(self):
        names = json.loads(data_path("ap10k-samples", "ap10k", "test_ap10k.json").read_text())["categories"][0][
            "keypoints"
        ]
        assert len(names) == 17
        for left, right in AP10K_MIRROR_PAIRS:
            assert names[left].startswith("left_") and names[right] == names[left].replace("left_", "right_")
        unpaired = set(range(17)) - {i for pair in AP10K_MIRROR_PAIRS for i in pair}
        assert not any(names[i].startswith(("left", "right")) for i in unpaired)

    def test_spair_tables_are_symmetric_involutions(self):
        for category, pairs in SPAIR_MIRROR_PAIRS.items():
            ids = [i for pair in pairs for i in pair]
            assert len(ids) == len(set(ids)), category  # each keypoint has at most one partner
            assert all(0 <= i < 31 for i in ids), category

    def test_flipped_pair_is_matched_through_the_partner(self, tmp_path):
        """A real SPair-71k image A and its mirror image B, annotated the way SPair annotates B:
        B's 'left eye' is the mirror image of A's right eye. Matching from mirrored A must look each
        keypoint up at its partner's mirrored position to land on B's annotation."""
        pairs = load_spair(data_path("spair-71k-mini", "SPair-71k"), split="test")
        pair = next(p for p in pairs if p.id.startswith("007560-"))  # a dog: 4 of 9 keypoints have partners
        rows = mirror_partner_rows(pair)
        source, _ = pair.counted_points()
        swapped = rows != np.arange(len(rows))
        assert swapped.sum() == 4 and np.abs(source - source[rows]).max() > 40
        width = pair.source_size[1]
        target = source[rows].copy()
        target[:, 0] = width - target[:, 0]
        counted = pair.visible
        mirrored = dataclasses.replace(
            pair,
            source_points=pair.source_points[counted],
            source_visible=np.ones(len(rows), bool),
            keypoint_ids=pair.keypoint_ids[counted],
            target_points=target,
            target_visible=np.ones(len(rows), bool),
            target_image=mirror_file(pair.source_image, tmp_path),
            target_size=pair.source_size,
        )
        with FeatureCache(build_extractor("baseline"), mode="memory", progress=False) as store:
            store.compute([mirrored.source_image, mirrored.target_image], flipped=[mirrored.source_image])
            found, flipped = _predict(store, [mirrored], MatchSettings(), 1, False, True)
        assert flipped == [True]
        assert np.abs(found[0] - target).max() < 6
        mirrored_without_partner = source.copy()
        mirrored_without_partner[:, 0] = width - source[:, 0]
        assert np.abs(found[0] - mirrored_without_partner)[swapped].max() > 20  # the swap mattered
