"""The ensemble teacher: per-location normalisation, weights, shared grid and geometry, full size on meta."""

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_teacher

from semcorr import build_extractor
from semcorr.errors import InputError, WeightsUnavailableError
from semcorr.features import EnsembleTeacher, SdxlTurboConfig, TeacherConfig
from semcorr.geometry import ImageGeometry

pytestmark = pytest.mark.usefixtures("one_thread")


class TestEnsembleTeacher:
    def test_each_member_normalised_per_location_then_weighted_and_concatenated(self, tmp_path):
        teacher = tiny_teacher(tmp_path, teacher_weights=(2.0, 1.0))
        image = torch.rand(3, 50, 70)
        fmap = teacher.extract(image)
        sdxl = teacher.sdxl.extract(image).features  # each member on its own canvas of the same image
        dino = teacher.dino.extract(image).features
        assert fmap.features.shape == (1, 32 + 24, 8, 8) and fmap.model == "tiny-teacher"
        expected = F.normalize(torch.cat([2.0 * sdxl, dino], dim=1), dim=1)
        assert torch.allclose(fmap.features, expected, atol=1e-5)
        parts = fmap.features[0, :32].norm(dim=0) / fmap.features[0, 32:].norm(dim=0)
        assert torch.allclose(parts, torch.full((8, 8), 2.0), atol=1e-4)  # per location, over channels
        assert teacher.config.sdxl.input_size == 32 and teacher.config.dino.input_size == 112

    def test_categories_prompt_only_the_sdxl_member(self, tmp_path):
        teacher = tiny_teacher(tmp_path)
        image = torch.rand(3, 40, 40)
        plain, prompted = teacher.extract(image).features, teacher.extract(image, categories=["cat"]).features
        assert not torch.allclose(plain[:, :32], prompted[:, :32], atol=1e-4)
        assert torch.allclose(plain[:, 32:], prompted[:, 32:], atol=1e-6)

    def test_both_canvases_show_the_same_grid_of_the_original_image(self, tmp_path):
        teacher = tiny_teacher(tmp_path)
        canvases, geometries = teacher.preprocess([torch.rand(3, 50, 70)])
        assert canvases["sdxl"].shape == (1, 3, 32, 32) and canvases["dino"].shape == (1, 3, 112, 112)
        cells = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="xy"), -1).reshape(-1, 2)
        on_sdxl_canvas = ImageGeometry.fit((50, 70), 32).from_grid(cells, (8, 8))
        assert torch.allclose(geometries[0].from_grid(cells, (8, 8)), on_sdxl_canvas, atol=1e-4)
        # cell (0, 0) covers the top-left 70/8 x 50/8 pixels of the original
        assert torch.allclose(on_sdxl_canvas[0], torch.tensor([70 / 16, 50 / 16]))
        letterbox = tiny_teacher(tmp_path, resize_mode="letterbox")
        assert letterbox.extract(torch.rand(3, 50, 70)).features.shape == (1, 56, 8, 8)

    def test_refuses_canvas_sizes_with_different_grids(self, tmp_path):
        with pytest.raises(InputError, match=r"grid \(12, 12\) at 48 differs from DINOv2's \(8, 8\)"):
            tiny_teacher(tmp_path, sdxl_input_size=48)
        with pytest.raises(InputError, match="teacher_weights"):
            tiny_teacher(tmp_path, teacher_weights=(0.0, 0.0))

    def test_full_size_on_meta_is_31x31x2048(self):
        config = TeacherConfig(sdxl=SdxlTurboConfig(timesteps=(51,)))
        with torch.device("meta"):
            teacher = EnsembleTeacher(config, random_weights=True)
            with torch.inference_mode():
                out = teacher({"sdxl": torch.empty(1, 3, 980, 980), "dino": torch.empty(1, 3, 434, 434)})
        assert tuple(out.shape) == (1, 1280 + 768, 31, 31)
        assert teacher.grid_size() == teacher.sdxl.grid_size() == teacher.dino.grid_size() == (31, 31)

    def test_offline_without_weights(self):
        with pytest.raises(WeightsUnavailableError, match="teacher/sdxl-turbo.*--sdxl-weights"):
            build_extractor("teacher", device="cpu")
