import pytest
import torch
import torch.nn.functional as F

from semcorr.matching import (
    mutual_nearest_neighbours,
    nearest_neighbour,
    sample_descriptors,
    similarity_maps,
    window_soft_argmax,
)


def random_features(channels=16, height=12, width=15, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(1, channels, height, width, generator=generator), dim=1)


class TestNearestNeighbour:
    @pytest.mark.parametrize("shift", [(0, 0), (3, 1), (-2, 4)])
    def test_known_shift_gives_exact_matches(self, shift):
        dx, dy = shift
        source = random_features()
        target = torch.roll(source, shifts=(dy, dx), dims=(2, 3))
        ys, xs = torch.meshgrid(torch.arange(2, 8), torch.arange(3, 9), indexing="ij")
        points = torch.stack((xs.flatten(), ys.flatten()), dim=-1).float()[None]  # (1, N, 2)
        descriptors = sample_descriptors(source, points)
        found, scores = nearest_neighbour(similarity_maps(descriptors, target))
        expected = torch.stack(((points[..., 0] + dx) % 15, (points[..., 1] + dy) % 12), dim=-1)
        assert torch.equal(found, expected)
        assert torch.allclose(scores, torch.ones_like(scores), atol=1e-5)

    def test_valid_mask_excludes_cells(self):
        similarity = torch.zeros(1, 1, 4, 4)
        similarity[0, 0, 0, 0] = 1.0
        similarity[0, 0, 2, 3] = 0.5
        valid = torch.ones(1, 4, 4, dtype=torch.bool)
        valid[0, 0, 0] = False
        found, score = nearest_neighbour(similarity, valid)
        assert found.tolist() == [[[3.0, 2.0]]] and score.item() == 0.5

    def test_wrong_shape_names_the_argument(self):
        with pytest.raises(ValueError, match="similarity must be"):
            nearest_neighbour(torch.zeros(4, 4))


class TestWindowSoftArgmax:
    def test_recovers_sub_cell_peak(self):
        height, width = 20, 24
        true_x, true_y = 9.37, 12.62
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
        )
        # a symmetric peak whose softmax-weighted mean is exactly the true position inside the window
        similarity = 1.0 - 0.002 * ((xs - true_x) ** 2 + (ys - true_y) ** 2)
        found, _ = window_soft_argmax(similarity[None, None], window=9, temperature=0.01)
        assert abs(found[0, 0, 0].item() - true_x) < 0.05 and abs(found[0, 0, 1].item() - true_y) < 0.05

    def test_ignores_distant_second_peak(self):
        similarity = torch.full((1, 1, 30, 30), -1.0)
        similarity[0, 0, 5, 5] = 1.0
        similarity[0, 0, 25, 25] = 0.99  # nearly as strong, far away: outside the window
        found, score = window_soft_argmax(similarity, window=5, temperature=0.01)
        assert torch.allclose(found, torch.tensor([[[5.0, 5.0]]]), atol=1e-3) and score.item() == 1.0

    def test_equals_nearest_at_low_temperature(self):
        similarity = torch.rand(2, 3, 10, 11)
        soft, _ = window_soft_argmax(similarity, window=3, temperature=1e-4)
        hard, _ = nearest_neighbour(similarity)
        assert torch.allclose(soft, hard, atol=1e-3)

    def test_gradients_flow(self):
        similarity = torch.rand(1, 2, 8, 8, requires_grad=True)
        found, _ = window_soft_argmax(similarity, window=5, temperature=0.1)
        found.sum().backward()
        assert similarity.grad is not None and similarity.grad.abs().sum() > 0

    @pytest.mark.parametrize("window,temperature,message", [(4, 0.1, "odd"), (0, 0.1, "odd"), (3, 0.0, "positive")])
    def test_bad_settings(self, window, temperature, message):
        with pytest.raises(ValueError, match=message):
            window_soft_argmax(torch.rand(1, 1, 5, 5), window=window, temperature=temperature)


class TestSampleDescriptors:
    def test_integer_points_equal_cells(self):
        features = random_features()
        descriptors = sample_descriptors(features, torch.tensor([[[4.0, 7.0], [0.0, 0.0]]]))
        assert torch.allclose(descriptors[0, 0], features[0, :, 7, 4], atol=1e-6)
        assert torch.allclose(descriptors[0, 1], features[0, :, 0, 0], atol=1e-6)

    def test_half_way_is_normalised_mean(self):
        features = random_features()
        descriptor = sample_descriptors(features, torch.tensor([[[4.5, 7.0]]]))[0, 0]
        expected = F.normalize(features[0, :, 7, 4] + features[0, :, 7, 5], dim=0)
        assert torch.allclose(descriptor, expected, atol=1e-6)


class TestMutualNearestNeighbours:
    def test_permuted_cells_are_all_mutual(self):
        source = random_features(channels=32, height=6, width=7)
        target = torch.flip(source, dims=(3,))
        points_a, points_b, scores = mutual_nearest_neighbours(source[0], target[0])
        assert len(points_a) == 42
        assert torch.equal(points_b[:, 0], 6 - points_a[:, 0]) and torch.equal(points_b[:, 1], points_a[:, 1])
        assert torch.allclose(scores, torch.ones(42), atol=1e-5)

    def test_one_sided_matches_are_dropped(self):
        a = torch.tensor([[1.0, 0.0], [0.9, 0.1]]).T.reshape(2, 1, 2)  # two cells, both nearest to b's first
        b = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(2, 1, 2)
        points_a, points_b, _ = mutual_nearest_neighbours(F.normalize(a, dim=0), F.normalize(b, dim=0))
        assert points_a.tolist() == [[0.0, 0.0]] and points_b.tolist() == [[0.0, 0.0]]
