import pytest
import torch

from semcorr import Matcher, MatchSettings, build_extractor, transfer_points
from semcorr.errors import InputError


class TestTransferPoints:
    @pytest.mark.parametrize("mode", ["square", "letterbox"])
    def test_same_image_maps_points_to_themselves(self, mode):
        image = torch.rand(3, 180, 260)
        extractor = build_extractor("baseline", resize_mode=mode, device="cpu")
        features = extractor.extract([image, image])
        points = torch.tensor([[[40.0, 50.0], [200.0, 120.0], [130.0, 90.0]]])
        result = transfer_points(features[0], features[1], points, MatchSettings(method="nearest"))
        cell = 260 / 60 if mode == "square" else 260 / 60
        assert (result.points - points).abs().max() <= cell
        assert result.similarity.shape == (1, 3, 60, 60)

    def test_letterbox_never_matches_padding(self):
        wide = torch.rand(3, 100, 300)
        extractor = build_extractor("baseline", resize_mode="letterbox", device="cpu")
        features = extractor.extract([wide, wide])
        points = torch.rand(1, 20, 2) * torch.tensor([300.0, 100.0])
        result = transfer_points(features[0], features[1], points)
        assert (result.points[..., 1] >= 0).all() and (result.points[..., 1] <= 100).all()

    def test_batch_shape_checked(self):
        features = build_extractor("baseline", device="cpu").extract(torch.rand(3, 50, 50))
        with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
            transfer_points(features, features, torch.zeros(5, 2))


class TestMatcher:
    def test_dict_contract(self):
        matcher = Matcher("baseline")
        out = matcher.match(
            torch.rand(3, 64, 96), torch.rand(3, 80, 80), [[10, 20], [50.5, 30]], return_similarity=True
        )
        assert set(out) >= {"matches", "model", "random_weights", "image_a", "image_b", "settings", "similarity"}
        assert out["matches"][1]["source"] == [50.5, 30.0] and len(out["matches"]) == 2
        assert out["similarity"].shape == (2, 60, 60)
        assert out["settings"]["matching"]["window"] == 11

    def test_random_weights_flagged(self):
        from helpers import tiny_backbone

        from semcorr.features import DinoV2Config, DinoV2Extractor

        extractor = DinoV2Extractor(DinoV2Config(input_size=56), backbone=tiny_backbone(), random_weights=True)
        out = Matcher(extractor).match(torch.rand(3, 40, 40), torch.rand(3, 40, 40), [[5, 5]])
        assert out["random_weights"] and "warning" in out

    def test_point_outside_names_point_and_image(self):
        with pytest.raises(InputError, match=r"point 0 .*image A"):
            Matcher("baseline").match(torch.rand(3, 40, 40), torch.rand(3, 40, 40), [[41, 5]])

    def test_unknown_setting_is_refused(self):
        with pytest.raises(InputError, match="unknown setting"):
            Matcher("baseline", layer=3)
