"""PCK: known answers, the threshold boundary, per-keypoint against per-image averaging."""

import numpy as np
import pytest

from semcorr.eval.pck import alpha_key, correct_keypoints, random_guess_correct, summarize, threshold_length

ALPHAS = (0.1, 0.05, 0.01)


class TestCorrectKeypoints:
    def test_ground_truth_scores_100(self):
        rng = np.random.default_rng(1)
        points = rng.uniform(0, 300, size=(12, 2))
        correct = correct_keypoints(points, points, 50.0, ALPHAS)
        assert correct.shape == (3, 12) and correct.all()
        summary = summarize(["a"] * 1, correct.sum(1)[None], [12], ALPHAS)
        assert summary["per_keypoint"] == {"0.1": 100.0, "0.05": 100.0, "0.01": 100.0}
        assert summary["per_image"] == summary["per_keypoint"]

    def test_exactly_on_the_threshold_counts_only_when_inclusive(self):
        # alpha * L = 0.25 * 40 = 10 exactly; the offset (6, 8) is exactly 10 px away
        target = np.array([[100.0, 100.0]])
        on = np.array([[106.0, 108.0]])
        assert correct_keypoints(on, target, 40.0, [0.25])[0, 0]
        assert not correct_keypoints(on, target, 40.0, [0.25], inclusive=False)[0, 0]

    def test_just_past_the_threshold_is_wrong(self):
        target = np.array([[100.0, 100.0]])
        past = np.array([[110.001, 100.0]])
        inside = np.array([[109.999, 100.0]])
        assert not correct_keypoints(past, target, 40.0, [0.25])[0, 0]
        assert correct_keypoints(inside, target, 40.0, [0.25], inclusive=False)[0, 0]

    def test_each_alpha_separately(self):
        target = np.zeros((3, 2))
        predicted = np.array([[0.5, 0.0], [3.0, 0.0], [7.0, 0.0]])  # L = 100: 0.5 <= 1, 3 <= 5, 7 <= 10
        correct = correct_keypoints(predicted, target, 100.0, ALPHAS)
        assert correct.sum(axis=1).tolist() == [3, 2, 1]

    def test_shape_mismatch_is_refused(self):
        with pytest.raises(ValueError, match="both be"):
            correct_keypoints(np.zeros((3, 2)), np.zeros((2, 2)), 1.0, ALPHAS)


class TestThresholdLength:
    def test_bbox_is_the_longer_side(self):
        assert threshold_length("bbox", (14, 71, 483, 220), (334, 500)) == 469.0
        assert threshold_length("bbox", (0, 0, 10, 30), (100, 100)) == 30.0

    def test_image_is_the_longer_side_of_the_target_image(self):
        assert threshold_length("image", (0, 0, 10, 10), (375, 500)) == 500.0

    def test_unknown_kind(self):
        with pytest.raises(ValueError):
            threshold_length("diagonal", (0, 0, 1, 1), (1, 1))


class TestAveraging:
    def test_per_keypoint_and_per_image_differ(self):
        # pair A: 1 of 1 correct (100 %); pair B: 1 of 4 correct (25 %)
        summary = summarize(["cat", "dog"], np.array([[1], [1]]), np.array([1, 4]), [0.1])
        assert summary["per_keypoint"]["0.1"] == pytest.approx(100 * 2 / 5)  # 40
        assert summary["per_image"]["0.1"] == pytest.approx((100 + 25) / 2)  # 62.5
        assert summary["category_mean"]["per_keypoint"]["0.1"] == pytest.approx(62.5)
        assert summary["per_category"]["dog"] == {
            "n_pairs": 1,
            "n_keypoints": 4,
            "per_keypoint": {"0.1": 25.0},
            "per_image": {"0.1": 25.0},
        }
        assert summary["n_keypoints"] == 5 and summary["n_pairs"] == 2

    def test_category_mean_weighs_categories_equally(self):
        # cat: 2 pairs with 10 keypoints each, all correct; dog: 1 pair, none correct
        summary = summarize(["cat", "cat", "dog"], np.array([[10], [10], [0]]), np.array([10, 10, 10]), [0.1])
        assert summary["per_keypoint"]["0.1"] == pytest.approx(200 / 3)
        assert summary["category_mean"]["per_keypoint"]["0.1"] == pytest.approx(50.0)

    def test_pairs_without_keypoints_are_skipped_per_image(self):
        summary = summarize(["a", "a"], np.array([[2], [0]]), np.array([4, 0]), [0.1])
        assert summary["per_image"]["0.1"] == 50.0 and summary["n_pairs_scored"] == 1
        empty = summarize(["a"], np.array([[0]]), np.array([0]), [0.1])
        assert empty["per_keypoint"]["0.1"] is None and empty["per_image"]["0.1"] is None

    def test_alpha_keys(self):
        assert [alpha_key(a) for a in (0.1, 0.05, 0.01, 0.15)] == ["0.1", "0.05", "0.01", "0.15"]


class TestRandomGuess:
    def test_matches_the_area_ratio(self):
        # target at the centre of a 100 x 100 box, radius 0.1 * 100 = 10: pi * 100 / 10000
        expected = random_guess_correct(np.array([[50.0, 50.0]]), (0, 0, 100, 100), 100.0, [0.1], samples=40000)
        assert expected[0] == pytest.approx(np.pi / 100, abs=0.002)

    def test_deterministic_and_bounded(self):
        target = np.array([[5.0, 5.0], [90.0, 10.0]])
        first = random_guess_correct(target, (0, 0, 100, 50), 100.0, ALPHAS)
        assert np.array_equal(first, random_guess_correct(target, (0, 0, 100, 50), 100.0, ALPHAS))
        assert random_guess_correct(target, (0, 0, 100, 50), 100.0, [2.0])[0] == 2.0
