"""Helpers of the 3D tests: the real living-room frames, folders in the RGB-D and CO3D layouts
built from them (in tmp_path, with links to the real images), and tiny synthetic scenes.

The reference geometry here is written independently of semcorr.threed, from the formats'
definitions: OpenCV-style K (pixel centres at integers) for cameras.json, PyTorch3D's
``X_cam = X_world @ R + T`` with +X left, +Y up and NDC intrinsics for CO3D.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from conftest import data_path
from PIL import Image

FLIP = np.diag([-1.0, -1.0, 1.0])


def livingroom() -> tuple[Path, dict]:
    root = data_path("rgbd-livingroom")
    return root, json.loads((root / "cameras.json").read_text())


def depth_mm(root: Path, frame: dict) -> np.ndarray:
    return np.array(Image.open(root / frame["depth"])).astype(np.float64)


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target.resolve())


def save_uint16(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16)).save(path)


def save_grey(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path)


def write_rgbd(
    folder: Path,
    root: Path,
    frames: list[dict],
    K,
    *,
    depths=None,
    masks=None,
    depth_scale=1000.0,
    extra: dict | None = None,
) -> Path:
    """A posed RGB-D folder linking the real images; ``depths`` (stored integers) and ``masks`` optional."""
    entries = []
    for i, frame in enumerate(frames):
        name = Path(frame["rgb"]).stem
        link(root / frame["rgb"], folder / "rgb" / f"{name}.jpg")
        entry = {"rgb": f"rgb/{name}.jpg", "depth": f"depth/{name}.png", "camera_to_world": frame["camera_to_world"]}
        if depths is None:
            link(root / frame["depth"], folder / "depth" / f"{name}.png")
        else:
            save_uint16(depths[i], folder / "depth" / f"{name}.png")
        if masks is not None:
            save_grey(masks[i], folder / "mask" / f"{name}.png")
            entry["mask"] = f"mask/{name}.png"
        entries.append(entry)
    data = {"K": K, "depth_scale": depth_scale, "frames": entries, **(extra or {})}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cameras.json").write_text(json.dumps(data))
    return folder


def ndc_viewpoint(K_ours: np.ndarray, camera_to_world: np.ndarray, size: tuple[int, int], fmt: str) -> dict:
    """A CO3D viewpoint (PyTorch3D convention) for a camera in semcorr's pixel convention."""
    height, width = size
    w2c = np.linalg.inv(np.asarray(camera_to_world, dtype=np.float64))
    R = w2c[:3, :3].T @ FLIP  # row-vector form, PyTorch3D axes
    T = FLIP @ w2c[:3, 3]
    scale = np.array([width / 2, height / 2]) if fmt == "ndc_norm_image_bounds" else np.full(2, min(width, height) / 2)
    focal = np.array([K_ours[0, 0], K_ours[1, 1]]) / scale
    principal = (np.array([width / 2, height / 2]) - np.array([K_ours[0, 2], K_ours[1, 2]])) / scale
    return {
        "R": R.tolist(),
        "T": T.tolist(),
        "focal_length": focal.tolist(),
        "principal_point": principal.tolist(),
        "intrinsics_format": fmt,
    }


def pytorch3d_screen(points: np.ndarray, viewpoint: dict, size: tuple[int, int]) -> np.ndarray:
    """(N, 3) world points -> (N, 2) PyTorch3D screen coordinates (image covers [0, W] x [0, H])."""
    height, width = size
    camera = points @ np.array(viewpoint["R"]) + np.array(viewpoint["T"])
    ndc = np.array(viewpoint["focal_length"]) * camera[:, :2] / camera[:, 2:] + np.array(viewpoint["principal_point"])
    if viewpoint["intrinsics_format"] == "ndc_isotropic":
        scale = np.full(2, min(width, height) / 2)
    else:
        scale = np.array([width / 2, height / 2])
    return np.array([width / 2, height / 2]) - ndc * scale


def write_co3d(
    dataset: Path,
    category: str,
    sequence: str,
    root: Path,
    frames: list[dict],
    K_ours: np.ndarray,
    depths_256: list[np.ndarray],
    masks: list[np.ndarray],
    depth_valid: list[np.ndarray],
    formats: list[str],
    subset_frames: list[int] | None = None,
) -> list[dict]:
    """A CO3D v2 category with one sequence; depth = float16(value) * 1/256 (so values are exact)."""
    annotations = []
    size = (480, 640)
    for n, frame in enumerate(frames):
        base = f"{category}/{sequence}"
        image = f"{base}/images/frame{n:06d}.jpg"
        link(root / frame["rgb"], dataset / image)
        depth_path = f"{base}/depths/frame{n:06d}.jpg.geometric.png"
        save_uint16(depths_256[n].astype(np.float16).view(np.uint16), dataset / depth_path)
        save_grey(depth_valid[n].astype(np.uint8) * 255, dataset / f"{base}/depth_masks/frame{n:06d}.png")
        save_grey(masks[n], dataset / f"{base}/masks/frame{n:06d}.png")
        annotations.append(
            {
                "sequence_name": sequence,
                "frame_number": n,
                "frame_timestamp": n / 30.0,
                "image": {"path": image, "size": list(size)},
                "depth": {
                    "path": depth_path,
                    "scale_adjustment": 1 / 256,
                    "mask_path": f"{base}/depth_masks/frame{n:06d}.png",
                },
                "mask": {"path": f"{base}/masks/frame{n:06d}.png", "mass": float(masks[n].sum() / 255)},
                "viewpoint": ndc_viewpoint(K_ours, frame["camera_to_world"], size, formats[n % len(formats)]),
                "meta": {"frame_type": "train_known"},
            }
        )
    with gzip.open(dataset / category / "frame_annotations.jgz", "wt") as file:
        json.dump(annotations[::-1], file)  # out of order on purpose: the reader sorts by frame_number
    with gzip.open(dataset / category / "sequence_annotations.jgz", "wt") as file:
        json.dump([{"sequence_name": sequence, "category": category, "viewpoint_quality_score": 1.5}], file)
    listed = subset_frames if subset_frames is not None else list(range(len(frames)))
    (dataset / category / "set_lists").mkdir(parents=True, exist_ok=True)
    (dataset / category / "set_lists" / "set_lists_manyview_dev_0.json").write_text(
        json.dumps(
            {
                "train": [[sequence, n, f"{category}/{sequence}/images/frame{n:06d}.jpg"] for n in listed],
                "val": [],
                "test": [],
            }
        )
    )
    return annotations


def plane_scene(folder: Path, shifts: list[float], size=(48, 64), depth_m: float = 3.0) -> Path:
    """A tiny synthetic sequence: a textured plane at z = depth_m seen by cameras shifted along x."""
    height, width = size
    rng = np.random.default_rng(0)
    common = folder.parent / "_common"
    if not (common / "rgb.png").exists():
        common.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(common / "rgb.png")
        save_uint16(np.full(size, depth_m * 1000), common / "depth.png")
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, shift in enumerate(shifts):
        link(common / "rgb.png", folder / "rgb" / f"{i:05d}.png")
        link(common / "depth.png", folder / "depth" / f"{i:05d}.png")
        pose = np.eye(4)
        pose[0, 3] = shift
        frames.append({"rgb": f"rgb/{i:05d}.png", "depth": f"depth/{i:05d}.png", "camera_to_world": pose.tolist()})
    K = [[60.0, 0, (width - 1) / 2], [0, 60.0, (height - 1) / 2], [0, 0, 1]]
    (folder / "cameras.json").write_text(json.dumps({"K": K, "frames": frames}))
    return folder
