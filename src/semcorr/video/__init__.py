"""Semantic point tracking through videos (:mod:`.tracking`) and streamed video I/O (:mod:`.io`).

    from semcorr.video import track_points
    for step in track_points("clip.mp4", [[120, 80], [200, 95]], model="student"):
        step.frame, step.points, step.confidence

Names load on first use (:mod:`semcorr._lazy`).
"""

from __future__ import annotations

from .._lazy import lazy_namespace

_EXPORTS = {
    "FrameTracks": "tracking",
    "PointTracker": "tracking",
    "TrackSettings": "tracking",
    "TRACK_FIELDS": "tracking",
    "run_video": "tracking",
    "track_points": "tracking",
    "write_tracks": "tracking",
    "VideoInfo": "io",
    "VideoWriter": "io",
    "draw_points": "io",
    "iter_frames": "io",
    "read_frame": "io",
    "video_info": "io",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
