"""Posed-view readers: RGB-D folders on the real living-room frames, and CO3D v2 built from them."""

import gzip
import json

import numpy as np
import pytest
from PIL import Image
from threed_helpers import livingroom, pytorch3d_screen, save_uint16, write_co3d, write_rgbd

from semcorr.errors import InputError
from semcorr.threed import CO3D, RGBDFolders, co3d_camera, make_pairs, open_views, select_frames


class TestRGBDFolders:
    def test_livingroom_cameras_and_depth(self):
        root, cameras = livingroom()
        dataset = RGBDFolders(root)
        assert dataset.sequence_names() == ["rgbd-livingroom"]
        sequence = dataset.sequence("rgbd-livingroom")
        assert len(sequence.frames) == 43 and sequence.notes == ()
        view = sequence.frames[5].load()
        K = np.array(cameras["K"])
        assert np.allclose(view.K, K + [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])  # OpenCV K -> centres at +0.5
        assert np.allclose(view.world_to_camera @ np.array(cameras["frames"][5]["camera_to_world"]), np.eye(4))
        stored = np.array(Image.open(root / cameras["frames"][5]["depth"]))
        assert view.image_size == (480, 640) and view.depth.dtype == np.float32 and view.mask is None
        assert np.allclose(view.depth, stored / 1000.0) and ((view.depth == 0) == (stored == 0)).all()

    def test_frames_without_files_refused(self, tmp_path):
        root, cameras = livingroom()
        folder = write_rgbd(tmp_path / "seq", root, cameras["frames"][:5], cameras["K"])
        (folder / "rgb" / "00010.jpg").unlink()
        with pytest.raises(
            InputError, match=r"lists 5 frames but 1 of their files are missing \(first: rgb/00010.jpg\)"
        ):
            RGBDFolders(folder).sequence("seq")
        data = json.loads((folder / "cameras.json").read_text())
        data["frames"][1]["depth"] = "depth/nothing.png"
        (folder / "cameras.json").write_text(json.dumps(data))
        with pytest.raises(InputError, match="missing"):
            RGBDFolders(folder).sequence("seq")
        del data["frames"][1]["depth"]
        (folder / "cameras.json").write_text(json.dumps(data))
        with pytest.raises(InputError, match="frame 1 has no 'depth' entry"):
            RGBDFolders(folder).sequence("seq")

    def test_unlisted_images_noted_and_bad_cameras_refused(self, tmp_path):
        root, cameras = livingroom()
        folder = write_rgbd(tmp_path / "seq", root, cameras["frames"][:4], cameras["K"])
        (folder / "rgb" / "stray.jpg").symlink_to((root / "rgb" / "00100.jpg").resolve())
        sequence = RGBDFolders(folder).sequence("seq")
        assert len(sequence.frames) == 4 and "1 images that it does not list" in sequence.notes[0]
        data = json.loads((folder / "cameras.json").read_text())
        data["frames"][2]["camera_to_world"][0][0] = 3.0
        (folder / "cameras.json").write_text(json.dumps(data))
        with pytest.raises(InputError, match="frame 2: camera_to_world: not a rigid transform"):
            RGBDFolders(folder).sequence("seq")
        with pytest.raises(InputError, match="no cameras.json"):
            RGBDFolders(tmp_path / "seq" / "rgb")

    def test_depth_size_mismatch_refused(self, tmp_path):
        root, cameras = livingroom()
        folder = write_rgbd(
            tmp_path / "seq", root, cameras["frames"][:4], cameras["K"], depths=[np.full((240, 320), 2000)] * 4
        )
        with pytest.raises(InputError, match=r"00000.png: is 320x240, image is 640x480"):
            RGBDFolders(folder).sequence("seq").frames[0].load()


class TestCO3DCamera:
    @pytest.mark.parametrize(
        "fmt, expected", [("ndc_isotropic", (100, 100, 95, 60)), ("ndc_norm_image_bounds", (200, 100, 90, 60))]
    )
    def test_hand_computed_intrinsics(self, fmt, expected):
        viewpoint = {
            "R": np.eye(3).tolist(),
            "T": [0, 0, 0],
            "focal_length": [2.0, 2.0],
            "principal_point": [0.1, -0.2],
            "intrinsics_format": fmt,
        }
        K, world_to_camera = co3d_camera(viewpoint, (100, 200))
        fx, fy, cx, cy = expected
        assert np.allclose(K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        assert np.allclose(world_to_camera, np.diag([-1.0, -1.0, 1.0, 1.0]))  # +X left, +Y up -> OpenCV

    @pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
    def test_projection_agrees_with_pytorch3d_formula(self, fmt):
        rng = np.random.default_rng(1)
        angle = 0.4
        rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        viewpoint = {
            "R": rotation.tolist(),
            "T": [0.2, -0.1, 4.0],
            "focal_length": [1.7, 2.3],
            "principal_point": [0.05, -0.08],
            "intrinsics_format": fmt,
        }
        size = (300, 500)
        points = rng.uniform(-1, 1, (50, 3))
        K, world_to_camera = co3d_camera(viewpoint, size)
        camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
        ours = (camera @ K.T)[:, :2] / camera[:, 2:]
        assert np.abs(ours - pytorch3d_screen(points, viewpoint, size)).max() < 1e-9

    def test_unknown_format_refused(self):
        viewpoint = {
            "R": np.eye(3).tolist(),
            "T": [0, 0, 0],
            "focal_length": [2, 2],
            "principal_point": [0, 0],
            "intrinsics_format": "screen",
        }
        with pytest.raises(InputError, match="unknown intrinsics_format 'screen'"):
            co3d_camera(viewpoint, (10, 10))


@pytest.fixture(scope="module")
def co3d_and_rgbd(tmp_path_factory):
    """Eight living-room frames as a CO3D sequence and as an RGB-D folder with identical depths and masks."""
    root, cameras = livingroom()
    frames = cameras["frames"][0:24:3]
    tmp = tmp_path_factory.mktemp("co3d")
    K_ours = np.array(cameras["K"]) + [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
    depths, masks, valid = [], [], []
    for i, frame in enumerate(frames):
        stored = np.round(np.array(Image.open(root / frame["depth"])).astype(np.float64) * 256 / 1000)  # exact in fp16
        depth_ok = np.ones(stored.shape, bool)
        depth_ok[: 40 + 5 * i] = False  # the depth masks drop a band at the top
        mask = np.full(stored.shape, 255, np.uint8)
        mask[:, :60] = 30  # low foreground probability on the left
        depths.append(stored)
        masks.append(mask)
        valid.append(depth_ok)
    write_co3d(
        tmp / "co3d",
        "sofa",
        "seq_1",
        root,
        frames,
        K_ours,
        depths,
        masks,
        valid,
        ["ndc_isotropic", "ndc_norm_image_bounds"],
    )
    rgbd = write_rgbd(
        tmp / "rgbd",
        root,
        frames,
        cameras["K"],
        depths=[d * v for d, v in zip(depths, valid)],
        masks=masks,
        depth_scale=256.0,
    )
    return tmp / "co3d", rgbd


class TestCO3D:
    def test_same_cameras_depths_masks_as_generic_reader(self, co3d_and_rgbd):
        co3d_root, rgbd_root = co3d_and_rgbd
        dataset = open_views(co3d_root)
        assert isinstance(dataset, CO3D) and dataset.sequence_names() == ["sofa/seq_1"]
        co3d = dataset.sequence("sofa/seq_1")
        generic = RGBDFolders(rgbd_root).sequence("rgbd")
        assert [f.name for f in co3d.frames] == [f"frame{n:06d}" for n in range(8)]
        for a, b in zip(co3d.frames, generic.frames):
            va, vb = a.load(), b.load()
            assert np.allclose(va.K, vb.K, atol=1e-9) and np.allclose(va.world_to_camera, vb.world_to_camera, atol=1e-9)
            assert np.array_equal(va.depth, vb.depth) and np.array_equal(va.mask, vb.mask)
            assert va.mask[:, :60].sum() == 0 and (va.depth[:40] == 0).all() and 2 < va.depth.max() < 10

    def test_same_correspondences_as_generic_reader(self, co3d_and_rgbd):
        co3d_root, rgbd_root = co3d_and_rgbd
        co3d = CO3D(co3d_root).sequence("sofa/seq_1")
        generic = RGBDFolders(rgbd_root).sequence("rgbd")
        chosen = select_frames(8)
        assert chosen == [0, 2, 4, 6]
        results = [make_pairs([seq.frames[i].load() for i in chosen]) for seq in (co3d, generic)]
        for a, b in zip(*results):
            assert len(a) > 300 and abs(len(a) - len(b)) <= 0.01 * len(b)
            index_b = {tuple(p): i for i, p in enumerate(b.source_xy.tolist())}
            common = [(i, index_b[tuple(p)]) for i, p in enumerate(a.source_xy.tolist()) if tuple(p) in index_b]
            assert len(common) >= 0.99 * len(b)
            ia, ib = np.array(common).T
            assert np.abs(a.target_xy[ia] - b.target_xy[ib]).max() < 0.5
            assert (a.source_xy[:, 0] >= 60).all() and (a.source_xy[:, 1] >= 40).all()  # masks honoured

    def test_set_list_split_and_quality(self, co3d_and_rgbd):
        co3d_root, _ = co3d_and_rgbd
        assert len(CO3D(co3d_root / "sofa", subset="manyview_dev_0", split="train").sequence("sofa/seq_1").frames) == 8
        assert CO3D(co3d_root, min_quality=2.0).sequence_names() == []
        with pytest.raises(InputError, match="no split 'dev'"):
            CO3D(co3d_root, subset="manyview_dev_0", split="dev").sequence("sofa/seq_1")
        with pytest.raises(InputError, match="no category 'car'"):
            CO3D(co3d_root, categories=["car"])

    def test_bad_annotations_refused(self, tmp_path):
        root, cameras = livingroom()
        frames = cameras["frames"][:5]
        shape = (480, 640)
        K_ours = np.array(cameras["K"]) + [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
        kwargs = dict(
            depths_256=[np.full(shape, 512.0)] * 5,
            masks=[np.full(shape, 255, np.uint8)] * 5,
            depth_valid=[np.ones(shape, bool)] * 5,
            formats=["ndc_isotropic"],
        )
        annotations = write_co3d(tmp_path, "cat", "s", root, frames, K_ours, subset_frames=[0, 1, 7], **kwargs)
        with pytest.raises(InputError, match="set list manyview_dev_0 lists 3 frames, 1 of them without an annotation"):
            CO3D(tmp_path, subset="manyview_dev_0").sequence("cat/s")
        annotations[2]["depth"] = None
        with gzip.open(tmp_path / "cat" / "frame_annotations.jgz", "wt") as file:
            json.dump(annotations, file)
        with pytest.raises(InputError, match="frame 2 has no depth annotation"):
            CO3D(tmp_path).sequence("cat/s")
        annotations[2]["depth"] = dict(annotations[1]["depth"], path="cat/s/depths/missing.png")
        with gzip.open(tmp_path / "cat" / "frame_annotations.jgz", "wt") as file:
            json.dump(annotations, file)
        with pytest.raises(InputError, match=r"annotations list 5 frames but 1 of their files are missing"):
            CO3D(tmp_path).sequence("cat/s")

    def test_low_resolution_depth_resampled_to_image(self, tmp_path):
        root, cameras = livingroom()
        frames = cameras["frames"][:4]
        shape = (480, 640)
        K_ours = np.array(cameras["K"]) + [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
        write_co3d(
            tmp_path,
            "cat",
            "s",
            root,
            frames,
            K_ours,
            [np.full(shape, 512.0)] * 4,
            [np.full(shape, 255, np.uint8)] * 4,
            [np.ones(shape, bool)] * 4,
            ["ndc_isotropic"],
        )
        half = np.arange(240 * 320, dtype=np.float64).reshape(240, 320) % 1000 + 1
        save_uint16(half.astype(np.float16).view(np.uint16), tmp_path / "cat/s/depths/frame000000.jpg.geometric.png")
        save_uint16(np.ones((240, 320)) * 255, tmp_path / "cat/s/depth_masks/frame000000.png")
        view = CO3D(tmp_path).sequence("cat/s").frames[0].load()
        assert view.depth.shape == shape
        expected = np.repeat(np.repeat(half.astype(np.float16).astype(np.float32), 2, 0), 2, 1) / 256
        assert np.allclose(view.depth, expected)
