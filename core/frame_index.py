"""Where each frame of a video is, from its packets alone: the index that lets a worker seek
to its range in the source instead of decoding (or copying) everything before it.

Demuxing reads packet headers, not pixels, so indexing an hour of video takes seconds. The
frames a decoder outputs are the packets that are not marked discard (an MP4 edit list
hides the lead-in of several real files that way), in presentation order, so the n-th frame
is the n-th smallest presentation time. Two checks decode a little to hold the index to
that: the head (up to the second keyframe) and the tail (from the last keyframe but one:
a truncated or damaged end decodes fewer frames than it lists). A source that fails either,
or has packets without times, is not seekable and says why; its frames are then counted by
decoding and the batch system cuts it into lossless chunks instead.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
from pydantic import BaseModel, Field

from facefleet.core.errors import InputError, require_input_file

HEAD_CHECK_FRAMES = 300  # a head check never decodes more than this


class FrameIndex(BaseModel):
    """The frames of a video stream by presentation time, and where decoding may start."""

    pts: list[int] = Field(description="presentation time of each frame, in display order")
    keyframes: list[int] = Field(description="presentation times of the keyframes, sorted")
    time_base: tuple[int, int] = Field(description="numerator, denominator of a pts unit")
    origin: int = Field(description="the stream's start time: frame times count from it")
    open_gop: bool = Field(
        default=True,
        description="some frame after a keyframe (in decode order) is shown before it, so "
        "it may reference the previous GOP",
    )
    seekable: bool
    reason: str | None = Field(default=None, description="why seeking is not exact, if not")

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    def time_of(self, pts: int) -> float:
        num, den = self.time_base
        return float(Fraction((pts - self.origin) * num, den))

    def times(self, start: int = 0, end: int | None = None) -> list[float]:
        return [self.time_of(p) for p in self.pts[start:end]]

    def seek_target(self, frame: int) -> int:
        """Where to start decoding so `frame` and everything after it decode exactly: the
        last keyframe at or before it; with open GOPs the one before that, because after an
        open-GOP keyframe the frames shown before it reference the previous GOP."""
        at = bisect.bisect_right(self.keyframes, self.pts[frame]) - 1
        return self.keyframes[max(at - (1 if self.open_gop else 0), 0)]

    def keyframe_numbers(self) -> list[int]:
        """Frame numbers where decoding can start (a keyframe hidden by an edit list counts
        as the first frame shown after it)."""
        return sorted({bisect.bisect_left(self.pts, k) for k in self.keyframes} - {len(self.pts)})

    def longest_gop(self) -> int:
        """The most frames a range may have to decode before its first one."""
        starts = [*self.keyframe_numbers(), self.frame_count]
        return max((b - a for a, b in pairwise(starts)), default=0)

    def positions(self) -> dict[int, int]:
        return {p: i for i, p in enumerate(self.pts)}


def open_video(path: Path) -> av.container.InputContainer:
    """`path` opened for reading; a clear InputError when it is no video."""
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable video ({exc})", subject=path) from None
    if not container.streams.video:
        container.close()
        raise InputError("no video stream", subject=path)
    return container


def _decoded_pts(path: Path, seek: int | None, until: int | None, limit: int) -> list[int | None]:
    """Presentation times the decoder outputs from `seek` (None: the start) on; stops past
    `until` or after `limit` frames; a decoding error ends the list."""
    container = open_video(path)
    out: list[int | None] = []
    try:
        stream = container.streams.video[0]
        if seek is not None:
            container.seek(seek, stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                out.append(frame.pts)
                if len(out) >= limit or (until is not None and (frame.pts or 0) > until):
                    break
        except av.error.FFmpegError:
            pass
    finally:
        container.close()
    return out


def index_video(path: Path) -> FrameIndex:
    """Demux `path` once (no decoding) into a FrameIndex, then check its head and tail."""
    path = require_input_file(path)
    container = open_video(path)
    pts: list[int] = []
    keyframes: list[int] = []
    untimed = 0
    open_gop = False
    try:
        stream = container.streams.video[0]
        base = stream.time_base or Fraction(1, 1)
        origin = stream.start_time or 0
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue  # the flush packet demux ends with
                if packet.pts is None:
                    untimed += 1
                    continue
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
                elif keyframes and packet.pts < keyframes[-1]:
                    open_gop = True  # a leading picture of the last keyframe's GOP
                if not packet.is_discard:
                    pts.append(packet.pts)
        except av.error.FFmpegError:
            pass  # a damaged tail: the tail check below finds what really decodes
    finally:
        container.close()
    pts.sort()
    keyframes.sort()
    index = FrameIndex(
        pts=pts,
        keyframes=keyframes,
        time_base=(base.numerator, base.denominator),
        origin=origin,
        open_gop=open_gop,
        seekable=True,
    )
    reason = _why_not_seekable(path, index, untimed)
    if reason is not None:
        index = index.model_copy(update={"seekable": False, "reason": reason})
    return index


def _why_not_seekable(path: Path, index: FrameIndex, untimed: int) -> str | None:
    if untimed:
        return f"{untimed} packets carry no presentation time"
    if not index.pts:
        return "no timed video packets"
    if len(set(index.pts)) != len(index.pts):
        return "several frames share a presentation time"
    if not index.keyframes or index.keyframes[0] > index.pts[0]:
        return "the first frame is not preceded by a keyframe"
    last_key = bisect.bisect_left(index.pts, index.keyframes[-1])
    tail_from = min(last_key, index.frame_count - 1)
    seek = index.seek_target(tail_from)
    if seek > index.keyframes[0]:
        second = index.keyframes[1]
        head = _decoded_pts(path, None, second, HEAD_CHECK_FRAMES)
        if not head or head != index.pts[: len(head)]:
            return "decoding from the start gives other frames than the packets list"
    else:
        tail_from, seek = 0, None  # few keyframes: the tail check decodes it all anyway
    decoded = _decoded_pts(path, seek, None, 10**9)
    want = index.pts[tail_from:]
    if [p for p in decoded if p is not None and p >= want[0]] != want:
        return "the end decodes other frames than the packets list (damaged or cut short)"
    return None


def seek_frames(
    container: av.container.InputContainer, index: FrameIndex, start: int, end: int
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame number, decoded frame) for start <= number < end, decoding from the keyframe
    `index.seek_target(start)`: the frames a decode from the very start gives, without it."""
    if start >= min(end, index.frame_count):
        return
    stream = container.streams.video[0]
    target = index.seek_target(start)
    if target > index.keyframes[0]:
        # Never seek to the first keyframe: in some containers (AVI with B-frames) a seek
        # there drops the first frames that a plain decode outputs.
        container.seek(target, stream=stream, backward=True, any_frame=False)
    positions = index.positions()
    for frame in container.decode(stream):
        number = positions.get(frame.pts) if frame.pts is not None else None
        if number is None:
            raise InputError(
                f"frame at pts {frame.pts} is not in the frame index (the source changed?)"
            )
        if number < start:
            continue
        if number >= end:
            break
        yield number, frame
