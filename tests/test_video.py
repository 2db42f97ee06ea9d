"""Point tracking through a real video: a real photo panned and zoomed along a known trajectory,
encoded with PyAV, tracked with the weight-free baseline, checked against the trajectory."""

import csv
import json

import av
import numpy as np
import pytest
from conftest import data_path
from PIL import Image
from skimage.feature import corner_harris, corner_peaks

from semcorr.errors import InputError
from semcorr.video import TrackSettings, run_video, track_points
from semcorr.video.io import VideoWriter, iter_frames, read_frame, video_info

WIDTH, HEIGHT, FRAMES, FPS = 192, 144, 24, 12


def window(t):
    """The source rectangle (x, y, w, h) shown in frame t: a pan right and down with a slight zoom out."""
    width = 400 + 1.2 * t
    return 40 + 3.0 * t, 30 + 1.5 * t, width, 0.75 * width


def to_frame(world, t):
    """(N, 2) source-photo points -> frame-t pixels (continuous coordinates)."""
    x, y, w, h = window(t)
    return np.stack([(world[:, 0] - x) * WIDTH / w, (world[:, 1] - y) * HEIGHT / h], axis=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(video path, (N, 2) world points): corners of the photo that stay in view in every frame."""
    photo = Image.open(data_path("rgbd-livingroom", "rgb", "00000.jpg")).convert("RGB")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with VideoWriter(path, FPS) as writer:
        for t in range(FRAMES):
            x, y, w, h = window(t)
            frame = photo.transform(
                (WIDTH, HEIGHT), Image.Transform.EXTENT, (x, y, x + w, y + h), Image.Resampling.BICUBIC
            )
            writer.write(np.asarray(frame))
    gray = np.asarray(photo.convert("L"), dtype=np.float64) / 255
    left, top = window(FRAMES - 1)[:2]
    right, bottom = window(0)[0] + window(0)[2], window(0)[1] + window(0)[3]
    peaks = corner_peaks(corner_harris(gray, sigma=3), min_distance=40, num_peaks=400)
    world = np.array(
        [[c + 0.5, r + 0.5] for r, c in peaks if left + 30 < c < right - 30 and top + 30 < r < bottom - 30],
        dtype=np.float64,
    )
    assert len(world) >= 4
    return path, world


class TestVideoIO:
    def test_written_video_decodes_with_size_count_and_rate(self, clip):
        info = video_info(clip[0])
        assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, FPS)
        frames = list(iter_frames(clip[0]))
        assert [i for i, _ in frames] == list(range(FRAMES))
        assert frames[0][1].shape == (HEIGHT, WIDTH, 3) and frames[0][1].dtype == np.uint8

    def test_range_and_single_frame(self, clip):
        assert [i for i, _ in iter_frames(clip[0], start=5, stop=8, prefetch=2)] == [5, 6, 7]
        assert np.array_equal(read_frame(clip[0], 5), dict(iter_frames(clip[0], prefetch=0))[5])
        with pytest.raises(InputError, match=r"clip.mp4: has no frame 99"):
            read_frame(clip[0], 99)

    def test_odd_sized_frames_are_padded_to_even(self, tmp_path):
        with VideoWriter(tmp_path / "odd.mp4", 5) as writer:
            for _ in range(3):
                writer.write(np.zeros((31, 45, 3), np.uint8))
        assert (video_info(tmp_path / "odd.mp4").width, video_info(tmp_path / "odd.mp4").height) == (46, 32)


class TestTrackingCommand:
    def test_follows_the_known_trajectory_and_writes_valid_files(self, cli, clip, tmp_path):
        path, world = clip
        points = [f"{x:.3f},{y:.3f}" for x, y in to_frame(world, 0)]
        out, tracks = tmp_path / "tracked.mp4", tmp_path / "tracks.json"
        result = cli(
            "video",
            str(path),
            "--points",
            *points,
            "--model",
            "baseline",
            "--out",
            str(out),
            "--tracks",
            str(tracks),
            "--batch-size",
            "5",
            "--quiet",
        )
        assert result.returncode == 0, result.stderr
        assert "frames/s" in result.stdout and f"through {FRAMES} frames" in result.stdout

        data = json.loads(tracks.read_text())
        assert data["model"] == "baseline" and data["frames"] == FRAMES and data["frame_size"] == [WIDTH, HEIGHT]
        assert len(data["tracks"]) == FRAMES * len(world) and "cycle" in data["confidence"]
        errors = []
        for row in data["tracks"]:
            truth = to_frame(world[row["point"]][None], row["frame"])[0]
            errors.append(np.hypot(row["x"] - truth[0], row["y"] - truth[1]))
            assert 0.0 <= row["confidence"] <= 1.0 and -1.0 <= row["score"] <= 1.0
        assert np.median(errors) < 0.02 * WIDTH, f"median error {np.median(errors):.2f} px"
        first = [row["confidence"] for row in data["tracks"] if row["frame"] == 0]
        assert min(first) > 0.9  # frame 0 is the source frame: every cycle returns home

        with av.open(str(out)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) == FRAMES and decoded[0].shape == (HEIGHT, WIDTH, 3)

    def test_corrupt_video_is_one_line_naming_it(self, cli, clip, tmp_path):
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(clip[0].read_bytes()[:2000])
        result = cli(
            "video", str(broken), "--points", "10,10", "--model", "baseline", "--tracks", str(tmp_path / "t.json")
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and "broken.mp4" in lines[0], result.stderr
        assert "Traceback" not in result.stderr

    def test_point_outside_the_first_frame_is_one_line_naming_it(self, cli, clip, tmp_path):
        result = cli(
            "video",
            str(clip[0]),
            "--points",
            "10,10",
            f"{WIDTH + 3},20",
            "--model",
            "baseline",
            "--tracks",
            str(tmp_path / "t.json"),
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert "point 1" in lines[0] and "frame 0 of" in lines[0] and "clip.mp4" in lines[0]


class TestTrackPointsAPI:
    def test_source_frame_csv_and_batches(self, clip, tmp_path):
        path, world = clip
        settings = TrackSettings(source_frame=6, batch_size=4, max_frames=9)
        summary = run_video(
            path,
            to_frame(world, 6).tolist(),
            tracks=tmp_path / "t.csv",
            model="baseline",
            settings=settings,
            progress=False,
        )
        assert summary["frames"] == 9 and summary["fps"] > 0 and summary["model"] == "baseline"
        with open(tmp_path / "t.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0]) == ["frame", "point", "x", "y", "confidence", "score", "cycle_error"]
        assert sorted({int(r["frame"]) for r in rows}) == list(range(9))
        at_source = [r for r in rows if r["frame"] == "6"]
        truth = to_frame(world, 6)
        assert all(
            np.hypot(float(r["x"]) - truth[int(r["point"])][0], float(r["y"]) - truth[int(r["point"])][1])
            < 0.02 * WIDTH
            for r in at_source
        )

    def test_iterator_yields_frames_in_order_and_checks_eagerly(self, clip):
        path, world = clip
        with pytest.raises(InputError, match=r"point 0 .* outside frame 2 of .*clip.mp4"):
            track_points(path, [[-1, 5]], model="baseline", settings=TrackSettings(source_frame=2))
        steps = track_points(
            path,
            to_frame(world, 0)[:2],
            model="baseline",
            keep_frames=True,
            settings=TrackSettings(max_frames=3, batch_size=2),
            input_size=98,
        )
        first = next(steps)
        assert first.frame == 0 and first.points.shape == (2, 2) and first.image.shape == (HEIGHT, WIDTH, 3)
        assert [s.frame for s in steps] == [1, 2]

    def test_missing_and_non_video_files(self, tmp_path):
        with pytest.raises(InputError, match="nothing.mp4: not found"):
            track_points(tmp_path / "nothing.mp4", [[1, 1]], model="baseline")
        text = tmp_path / "notes.mp4"
        text.write_text("not a video\n")
        with pytest.raises(InputError, match="notes.mp4"):
            track_points(text, [[1, 1]], model="baseline")
