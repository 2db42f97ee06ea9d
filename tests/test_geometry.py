import pytest
import torch

from semcorr.geometry import ImageGeometry, resize_onto_canvas

SIZES = [(300, 451), (500, 741), (480, 200), (434, 434), (17, 1000)]


class TestImageGeometry:
    @pytest.mark.parametrize("mode", ["square", "letterbox"])
    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize("grid", [(31, 31), (60, 60), (8, 5)])
    def test_round_trip_within_0_01_px(self, mode, size, grid):
        geometry = ImageGeometry.fit(size, 434, mode)
        height, width = size
        points = torch.rand(200, 2, dtype=torch.float64) * torch.tensor([width, height], dtype=torch.float64)
        back = geometry.from_grid(geometry.to_grid(points, grid), grid)
        assert (back - points).abs().max() < 0.01
        assert (geometry.from_input(geometry.to_input(points)) - points).abs().max() < 0.01

    def test_square_is_a_pure_stretch(self):
        geometry = ImageGeometry.fit((300, 600), 434, "square")
        corners = torch.tensor([[0.0, 0.0], [600.0, 300.0], [300.0, 150.0]])
        assert torch.allclose(geometry.to_input(corners), torch.tensor([[0.0, 0.0], [434.0, 434.0], [217.0, 217.0]]))

    def test_cell_centres(self):
        geometry = ImageGeometry.fit((434, 434), 434, "square")
        # cell (0, 0) of a 31x31 grid is centred at input pixel (7, 7); grid coordinate (0, 0)
        assert torch.allclose(geometry.to_grid(torch.tensor([[7.0, 7.0]]), (31, 31)), torch.zeros(1, 2))
        assert torch.allclose(
            geometry.from_grid(torch.tensor([[30.0, 30.0]]), (31, 31)), torch.tensor([[427.0, 427.0]])
        )

    def test_letterbox_keeps_aspect_and_centres(self):
        geometry = ImageGeometry.fit((200, 400), 434, "letterbox")
        assert geometry.content_size == (217, 434)
        assert geometry.scale[0] == pytest.approx(geometry.scale[1], rel=1e-2)
        assert geometry.offset == (0.0, float((434 - 217) // 2))
        valid = geometry.valid_cells((31, 31))
        assert valid[15].all() and not valid[0].any() and not valid[-1].any()

    def test_square_has_no_invalid_cells(self):
        assert ImageGeometry.fit((123, 456), 434, "square").valid_cells((60, 60)).all()

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="resize mode"):
            ImageGeometry.fit((10, 10), 434, "crop")
        with pytest.raises(ValueError, match="positive"):
            ImageGeometry.fit((0, 10), 434, "square")


class TestResizeOntoCanvas:
    def test_letterbox_pads_and_places_content(self):
        image = torch.rand(3, 100, 300)
        geometry = ImageGeometry.fit((100, 300), 90, "letterbox")
        canvas = resize_onto_canvas(image, geometry)
        assert canvas.shape == (3, 90, 90)
        top = int(geometry.offset[1])
        assert torch.all(canvas[:, :top] == 0.5) and torch.all(canvas[:, top + geometry.content_size[0] :] == 0.5)

    def test_square_shape_and_range(self):
        canvas = resize_onto_canvas(torch.rand(3, 50, 70), ImageGeometry.fit((50, 70), 434, "square"))
        assert canvas.shape == (3, 434, 434) and canvas.min() >= 0 and canvas.max() <= 1
