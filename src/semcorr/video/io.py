"""Reading and writing video files with PyAV, frame by frame (a video is never held in memory).

Frames are decoded in a background thread into a small bounded queue, so decoding overlaps with
feature extraction. Every failure a user can cause (a missing, corrupt or truncated file, a file
without a video stream, a frame index past the end) is an :class:`~semcorr.errors.InputError`
whose one-line message names the file.
"""

from __future__ import annotations

import colorsys
import contextlib
import os
import queue
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError
from ..extras import require_extra
from ..fileio import atomic_file
from ..settings import OnError

DEFAULT_FPS = Fraction(25)
# The containers VideoWriter writes (H.264 or MPEG-4 inside), by file suffix.
VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}


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


def _open(path: str | os.PathLike) -> Any:  # an av container (av is imported when used)
    av = require_extra("av", "reading and writing video")
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


def _decode(path: str | os.PathLike, on_error: OnError = "skip") -> Iterator[tuple[int, np.ndarray]]:
    """``(index, (H, W, 3) uint8 RGB)`` frames in order. A frame that cannot be decoded, data that
    cannot be read, or fewer frames than the container declares (a file cut short) are reported
    with the frame number: a warning (``on_error="skip"``; a damaged frame keeps its number) or
    an :class:`InputError` (``"stop"``). No frame at all is always an error."""
    av = require_extra("av", "reading and writing video")
    name = os.fsdecode(path)
    index = decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, ValueError) as error:
                _damaged(name, f"the data after frame {index - 1} cannot be read ({_reason(error)})", on_error)
                break
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, OSError, ValueError) as error:
                _damaged(name, f"frame {index} cannot be decoded ({_reason(error)})", on_error)
                index += 1
                continue
            for frame in frames:
                yield index, frame.to_ndarray(format="rgb24")
                index += 1
                decoded += 1
    if decoded == 0:
        raise InputError(f"{name}: no video frame could be decoded (corrupt or empty video)")
    if declared and index < declared:
        _damaged(
            name,
            f"only {index} of the {declared} frames it declares could be read (cut short or damaged "
            f"after frame {index - 1})",
            on_error,
        )


def _damaged(name: str, what: str, on_error: OnError) -> None:
    if on_error == "stop":
        raise InputError(f"{name}: {what}; stopped (--on-error stop)")
    warnings.warn(f"{name}: {what}; skipped (--on-error stop makes this an error)", stacklevel=3)


def iter_frames(
    path: str | os.PathLike, *, start: int = 0, stop: int | None = None, prefetch: int = 8, on_error: OnError = "skip"
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames ``start <= index < stop`` as ``(index, (H, W, 3) uint8 RGB)`` pairs.

    Args:
        prefetch: frames decoded ahead in a background thread (0: decode in the caller's thread).
        on_error: damaged or missing frames are reported and skipped (``skip``) or stop (``stop``).
    """
    if stop is not None and stop <= start:
        return
    frames: Iterator[tuple[int, np.ndarray]] = ((i, f) for i, f in _decode(path, on_error) if i >= start)
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
    for _, frame in iter_frames(path, start=index, stop=index + 1, prefetch=0):
        return frame
    raise InputError(f"{os.fsdecode(path)}: has no frame {index} (frames are numbered from 0)")


class VideoWriter:
    """Encode (H, W, 3) uint8 RGB frames to a video file (H.264 in yuv420p; MPEG-4 if x264 is missing).

    H.264 in yuv420p needs even sides: odd-sized frames get one replicated row/column. The file is
    written under a temporary name and renamed into place by :meth:`close` (a run that fails or is
    killed leaves no half video; :meth:`abort` drops it). Containers by suffix: :data:`VIDEO_FORMATS`.
    Use as a context manager (an error in the block aborts), or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float = DEFAULT_FPS, *, crf: int = 20) -> None:
        av = require_extra("av", "reading and writing video")
        self.path = os.fsdecode(path)
        container_format = VIDEO_FORMATS.get(Path(self.path).suffix.lower())
        if container_format is None:
            raise InputError(f"{self.path}: the video must be a {' or '.join(VIDEO_FORMATS)} file")
        self._commit = contextlib.ExitStack()
        temporary = self._commit.enter_context(atomic_file(self.path))
        try:
            self._container = av.open(str(temporary), mode="w", format=container_format)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            self._commit.close()
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
        av = require_extra("av", "reading and writing video")
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
        """Flush the encoder, close the file and move it into place."""
        if self._container is None:
            return
        try:
            if self._size is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        except BaseException:
            self.abort()
            raise
        self._container.close()
        self._container = None
        self._commit.close()

    def abort(self) -> None:
        """Close and delete the unfinished file (``path`` keeps what it held before)."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        self._commit.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def point_colours(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct, saturated RGB colours (evenly spaced hues)."""
    rgbs = [colorsys.hsv_to_rgb(i / max(count, 1), 0.9, 1.0) for i in range(count)]
    return [(int(255 * r), int(255 * g), int(255 * b)) for r, g, b in rgbs]


def draw_points(
    frame: np.ndarray,
    points: Sequence[Sequence[float]],
    confidence: Sequence[float],
    trails: Sequence[Sequence[Sequence[float]]] = (),
    *,
    threshold: float = 0.5,
) -> np.ndarray:
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
