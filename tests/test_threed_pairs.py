"""3D correspondence generation: geometry on the real living-room frames, thinning, bad input."""

import dataclasses

import numpy as np
import pytest
from scipy.spatial import cKDTree
from threed_helpers import depth_mm, livingroom, plane_scene

from semcorr.errors import InputError
from semcorr.threed import PairSettings, RGBDFolders, make_3d_pairs, make_pairs, open_3d_pairs, select_frames, thin


@pytest.fixture(scope="module")
def real():
    """The four evenly spaced living-room frames, as views and as raw files."""
    root, cameras = livingroom()
    sequence = RGBDFolders(root).sequence("rgbd-livingroom")
    chosen = select_frames(len(sequence.frames))
    views = [sequence.frames[i].load() for i in chosen]
    frames = [cameras["frames"][i] for i in chosen]
    return root, np.array(cameras["K"], dtype=np.float64), frames, views


def reference_targets(root, K, source, target, source_xy):
    """Independent reprojection, point by point: OpenCV K (pixel centres at integers), world = T @ camera."""
    depth = depth_mm(root, source) / 1000.0
    camera_to_world_s = np.array(source["camera_to_world"])
    world_to_camera_t = np.linalg.inv(np.array(target["camera_to_world"]))
    out = []
    for x, y in source_xy:
        col, row = int(np.floor(x)), int(np.floor(y))
        z = depth[row, col]
        point = z * np.linalg.solve(K, np.array([col, row, 1.0]))  # pixel centre (col, row) in K's convention
        world = camera_to_world_s @ np.append(point, 1.0)
        seen = (world_to_camera_t @ world)[:3]
        u, v, w = K @ seen
        out.append((u / w + 0.5, v / w + 0.5, seen[2]))  # back to centres at +0.5
    return np.array(out)


def reference_visible(root, K, source, target, tolerance=0.05):
    """Independent, vectorised: the set of source pixels (row, col) whose projection the target's depth confirms."""
    depth_s, depth_t = depth_mm(root, source) / 1000.0, depth_mm(root, target) / 1000.0
    rows, cols = np.nonzero(depth_s > 0)
    rays = np.linalg.inv(K) @ np.vstack([cols, rows, np.ones_like(cols)])
    points = np.vstack([rays * depth_s[rows, cols], np.ones_like(cols)])
    seen = np.linalg.inv(np.array(target["camera_to_world"])) @ np.array(source["camera_to_world"]) @ points
    u, v = (K @ seen[:3])[:2] / seen[2] + 0.5
    height, width = depth_t.shape
    ok = (seen[2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    d = np.zeros_like(u)
    d[ok] = depth_t[v[ok].astype(int), u[ok].astype(int)]
    ok &= (d > 0) & (np.abs(seen[2] - d) <= tolerance * seen[2])
    return set(zip(rows[ok].tolist(), cols[ok].tolist()))


class TestRealGeometry:
    def test_correspondences_where_independent_reprojection_puts_them(self, real):
        root, K, frames, views = real
        assert [v.name for v in views] == ["00000", "00050", "00105", "00160"]
        pairs = make_pairs(views)
        for pair, frame in zip(pairs, frames[1:]):
            assert len(pair) > 400
            reference = reference_targets(root, K, frames[0], frame, pair.source_xy)
            assert np.abs(pair.target_xy - reference[:, :2]).max() < 0.5
            assert np.abs(pair.target_xy - reference[:, :2]).max() < 1e-3  # in fact exact
            assert np.all((pair.source_xy - 0.5) % 1 == 0)  # source points are pixel centres
            for xy in (pair.source_xy, pair.target_xy):  # thinning: >= 10 px apart in both images
                assert not cKDTree(xy).query_pairs(10.0 - 1e-6)

    def test_visibility_matches_independent_check(self, real):
        root, K, frames, views = real
        everything = make_pairs(views, PairSettings(nms_radius=0))
        for pair, frame in zip(everything, frames[1:]):
            ours = set(
                zip(
                    (pair.source_xy[:, 1] - 0.5).astype(int).tolist(), (pair.source_xy[:, 0] - 0.5).astype(int).tolist()
                )
            )
            reference = reference_visible(root, K, frames[0], frame)
            assert len(reference) > 50_000
            assert len(ours ^ reference) <= 1e-4 * len(reference)

    def test_occluder_removes_hidden_points_and_keeps_visible_ones(self, real):
        root, K, frames, views = real
        source, target = views[0], views[1]
        x0, x1, y0, y1 = 200, 420, 150, 330
        depth = target.depth.copy()
        depth[y0:y1, x0:x1] = 0.3  # a near occluder in front of everything
        occluded = dataclasses.replace(target, depth=depth)
        settings = PairSettings(nms_radius=0)
        before = make_pairs([source, target], settings)[0]
        after = make_pairs([source, occluded], settings)[0]
        inside = lambda xy: (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)  # noqa: E731  (a one-line predicate reads best here)
        assert inside(before.target_xy).sum() > 20_000 and inside(after.target_xy).sum() == 0
        assert np.array_equal(after.source_xy, before.source_xy[~inside(before.target_xy)])
        assert np.array_equal(after.target_xy, before.target_xy[~inside(before.target_xy)])

    def test_zero_depth_regions_and_masks_skip_pixels(self, real):
        root, K, frames, views = real
        source, target = views[0], views[1]
        settings = PairSettings(nms_radius=0)
        holey = source.depth.copy()
        holey[100:200, 100:300] = 0.0
        pair = make_pairs([dataclasses.replace(source, depth=holey), target], settings)[0]
        in_hole = (
            (pair.source_xy[:, 0] > 100)
            & (pair.source_xy[:, 0] < 300)
            & (pair.source_xy[:, 1] > 100)
            & (pair.source_xy[:, 1] < 200)
        )
        assert len(pair) > 10_000 and not in_hole.any()
        blank = dataclasses.replace(target, depth=np.zeros_like(target.depth))
        assert len(make_pairs([source, blank], settings)[0]) == 0  # no target depth: nothing can be confirmed
        mask = np.zeros(source.image_size, bool)
        mask[:, 320:] = True
        masked = make_pairs([dataclasses.replace(source, mask=mask), dataclasses.replace(target, mask=mask)], settings)[
            0
        ]
        assert len(masked) > 1000 and (masked.source_xy[:, 0] > 320).all() and (masked.target_xy[:, 0] >= 320).all()


class TestThinning:
    def test_best_score_wins_and_distance_in_both_images(self):
        source = np.array([[0.5, 0.5], [5.5, 0.5], [30.5, 0.5], [60.5, 0.5]])
        target = np.array([[0.0, 0.0], [5.0, 0.0], [100.0, 0.0], [104.0, 0.0]])
        score = np.array([0.3, 0.1, 0.2, 0.4])
        assert thin(source, target, score, 10.0).tolist() == [1, 2]  # 0 too close to 1; 3 too close to 2 in target
        assert thin(source, target, score, 10.0, in_target=False).tolist() == [1, 2, 3]
        assert thin(source, target, score, 0.0).tolist() == [0, 1, 2, 3]
        assert thin(source, target, np.zeros(4), 10.0, in_target=False).tolist() == [0, 2, 3]  # ties: raster order

    def test_select_frames(self):
        assert select_frames(43) == [0, 10, 21, 32] and select_frames(4) == [0, 1, 2, 3]
        with pytest.raises(InputError, match="at least 4 frames, this one has 3"):
            select_frames(3)
        with pytest.raises(InputError, match="depth_tolerance must be positive"):
            PairSettings(depth_tolerance=0)


class TestBadSequences:
    @pytest.fixture
    def mixed(self, tmp_path):
        """Four synthetic sequences: one good, one of three frames, one with a missing image, one missing depth."""
        data = tmp_path / "data"
        plane_scene(data / "a_good", [0.0, 0.05, 0.1, 0.15, 0.2])
        plane_scene(data / "b_short", [0.0, 0.05, 0.1])
        plane_scene(data / "c_no_image", [0.0, 0.05, 0.1, 0.15]).joinpath("rgb", "00002.png").unlink()
        plane_scene(data / "d_no_depth", [0.0, 0.05, 0.1, 0.15]).joinpath("depth", "00000.png").unlink()
        return data

    def test_skipped_with_a_warning_each(self, mixed, tmp_path):
        warnings = []
        summary = make_3d_pairs(mixed, tmp_path / "p.h5", progress=False, warn=warnings.append)
        assert summary["written"] == 1 and summary["skipped"] == 3 and summary["in_file"] == 1
        assert len(warnings) == 3
        assert "b_short: a sequence needs at least 4 frames, this one has 3" in warnings[0]
        assert "c_no_image" in warnings[1] and "first: rgb/00002.png" in warnings[1]
        assert "d_no_depth" in warnings[2] and "first: depth/00000.png" in warnings[2]
        with open_3d_pairs(tmp_path / "p.h5") as pairs:
            assert len(pairs) == 3 and {p.sequence for p in pairs} == {"a_good"}
            pair = pairs[0]
            assert pair.source_frame == "00000" and pair.target_frame == "00001"
            assert pair.source_image == mixed / "a_good" / "rgb" / "00000.png"
            shift = pair.target_xy - pair.source_xy  # plane at 3 m, camera 5 cm to the right: 1 px to the left
            assert np.allclose(shift, [-1.0, 0.0], atol=1e-4)

    def test_strict_stops_at_the_first(self, mixed, tmp_path):
        with pytest.raises(InputError, match="sequence b_short: a sequence needs at least 4 frames"):
            make_3d_pairs(mixed, tmp_path / "p.h5", progress=False, strict=True)

    def test_one_view_refused(self, real):
        with pytest.raises(InputError, match="a source and at least one target"):
            make_pairs(real[3][:1])
