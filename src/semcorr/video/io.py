"""Reading and writing video files with PyAV, frame by frame (a video is never held in memory).

Frames are decoded in a background thread into a small bounded queue, so decoding overlaps with
feature extraction. Every failure a user can cause (a missing, corrupt or truncated file, a file
without a video stream, a frame index past the end) is an :class:`~semcorr.errors.InputError`
whose one-line message names the file.
"""

from __future__ import annotations

import colorsys
import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError

DEFAULT_FPS = Fraction(25)


def _reason(error: BaseException) -> str:
    """A one-line reason: FFmpeg's own words where it gave them (no errno, no repeated file name)."""
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split()) or type(error).__name__


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream.

    Attributes:
        width, height: frame size in pixels.
        fps: average frame rate (``DEFAULT_FPS`` when the container does not say).
        frames: number of frames the container declares (0 when unknown; decoding is the truth).
    """

    width: int
    height: int
    fps: Fraction
    frames: int


def _open(path: str | os.PathLike):
    name = os.fsdecode(path)
    if Path(name).is_dir():
        raise InputError(f"{name}: is a directory, not a video file")
    if not Path(name).exists():
        raise InputError(f"{name}: not found")
    try:
        container = av.open(name)
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise InputError(f"{name}: not a readable video ({_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{name}: has no video stream")
    return container


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and declared frame count of a video file."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
        return VideoInfo(int(stream.width), int(stream.height), Fraction(rate), int(stream.frames or 0))


def _decode(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames in order; decoding errors become InputError naming the file."""
    name = os.fsdecode(path)
    count = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise InputError(f"{name}: corrupt or truncated video data after {count} frames "
                             f"({_reason(error)})") from None
    if count == 0:
        raise InputError(f"{name}: no video frame could be decoded (corrupt or empty video)")


def iter_frames(path: str | os.PathLike, *, start: int = 0, stop: int | None = None,
                prefetch: int = 8) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames ``start <= index < stop`` as ``(index, (H, W, 3) uint8 RGB)`` pairs.

    Args:
        prefetch: frames decoded ahead in a background thread (0: decode in the caller's thread).
    """
    if stop is not None and stop <= start:
        return
    frames = ((i, f) for i, f in enumerate(_decode(path)) if i >= start)
    if stop is not None:
        frames = _until(frames, stop)
    if prefetch <= 0:
        yield from frames
        return
    yield from _prefetched(frames, prefetch)


def _until(frames: Iterator[tuple[int, np.ndarray]], stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Stop decoding as soon as the frame before ``stop`` has been produced."""
    for index, frame in frames:
        yield index, frame
        if index >= stop - 1:
            return


def _prefetched(items: Iterator, size: int) -> Iterator:
    """Run ``items`` in a daemon thread, ``size`` items ahead; errors are re-raised in the caller."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as error:  # handed to the consumer
            buffer.put(error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="semcorr-video-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)


def read_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) as (H, W, 3) uint8 RGB, decoding from the start."""
    if index < 0:
        raise InputError(f"{os.fsdecode(path)}: frame index must be >= 0, got {index}")
    for found, frame in iter_frames(path, start=index, stop=index + 1, prefetch=0):
        return frame
    raise InputError(f"{os.fsdecode(path)}: has no frame {index} (frames are numbered from 0)")


class VideoWriter:
    """Encode (H, W, 3) uint8 RGB frames to a video file (H.264 in yuv420p; MPEG-4 if x264 is missing).

    H.264 in yuv420p needs even sides: odd-sized frames get one replicated row/column.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float = DEFAULT_FPS, *, crf: int = 20) -> None:
        self.path = os.fsdecode(path)
        try:
            self._container = av.open(self.path, mode="w")
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise InputError(f"{self.path}: cannot write a video here ({_reason(error)})") from None
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame; every frame must have the first frame's size."""
        height, width = frame.shape[:2]
        if self._size is None:
            self._size = (height, width)
            self._stream.height, self._stream.width = height + height % 2, width + width % 2
        elif (height, width) != self._size:
            raise ValueError(f"frame {self.frames} is {width}x{height}, expected {self._size[1]}x{self._size[0]}")
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self._container is None:
            return
        try:
            if self._size is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def point_colours(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct, saturated RGB colours (evenly spaced hues)."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(count, 1), 0.9, 1.0)) for i in range(count)]


def draw_points(frame: np.ndarray, points: Sequence[Sequence[float]], confidence: Sequence[float],
                trails: Sequence[Sequence[Sequence[float]]] = (), *, threshold: float = 0.5) -> np.ndarray:
    """Draw tracked points on a copy of an (H, W, 3) uint8 frame.

    Each point is a disc in its own colour (hollow ring when ``confidence < threshold``), with an
    optional trail of its recent positions; points in pixels (x, y), image covering [0, W] x [0, H].
    """
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    radius = max(3.0, 0.012 * max(frame.shape[:2]))
    colours = point_colours(len(points))
    for index, trail in enumerate(trails):
        if len(trail) > 1:
            draw.line([tuple(p) for p in trail], fill=colours[index], width=max(1, int(radius / 3)))
    for (x, y), score, colour in zip(points, confidence, colours):
        box = (x - radius, y - radius, x + radius, y + radius)
        if score >= threshold:
            draw.ellipse(box, fill=colour, outline=(255, 255, 255), width=max(1, int(radius / 4)))
        else:
            draw.ellipse(box, outline=colour, width=max(1, int(radius / 3)))
    return np.asarray(image)
