"""Video I/O with PyAV: frames with their true index and time, H.264 output, audio kept.

Decoding counts frames instead of trusting the container (several real files overstate
their frame count), takes times from timestamps (variable frame rate) and applies rotation
metadata. Annotated output is H.264 yuv420p MP4 with +faststart, which browsers play;
OpenCV's pip wheels cannot write H.264, so cv2.VideoWriter is never used for deliverables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from facefleet.core.errors import InputError, require_input_file
from facefleet.core.frame_index import FrameIndex, index_video, open_video, seek_frames
from facefleet.core.media import VideoInfo
from facefleet.core.prefetch import Prefetcher


@dataclass(frozen=True)
class VideoFrame:
    index: int
    time_s: float
    image: np.ndarray  # BGR uint8, rotation already applied


def _open(path: Path) -> av.container.InputContainer:
    return open_video(require_input_file(path))


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    # PyAV reports the display rotation counter-clockwise in degrees.
    turns = {
        90: cv2.ROTATE_90_COUNTERCLOCKWISE,
        180: cv2.ROTATE_180,
        270: cv2.ROTATE_90_CLOCKWISE,  # also -90: Python's modulo is never negative
    }
    code = turns.get(int(rotation) % 360)
    return cv2.rotate(image, code) if code is not None else image


def _decode(
    path: Path,
    start: int = 0,
    end: int | None = None,
    offset: int = 0,
    index: FrameIndex | None = None,
) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """(index, time_s, decoded frame) for `start` <= index < `end`; see `read_frames`."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if index is not None and index.seekable:
            last = index.frame_count if end is None else end
            for number, frame in seek_frames(container, index, start, last):
                yield number, index.time_of(frame.pts), frame
            return
        base = stream.time_base or Fraction(1, 1)
        origin = stream.start_time or 0
        fps = float(stream.average_rate or 0) or 25.0
        index = offset - 1
        try:
            for frame in container.decode(stream):
                index += 1
                if index < start:
                    continue
                if end is not None and index >= end:
                    break
                time_s = (
                    float((frame.pts - origin) * base) if frame.pts is not None else index / fps
                )
                yield index, time_s, frame
        except av.error.FFmpegError:
            if index < offset:
                raise InputError("no decodable video frames", subject=path) from None
    finally:
        container.close()


def _to_bgr(frame: av.VideoFrame) -> np.ndarray:
    return _rotate(frame.to_ndarray(format="bgr24"), frame.rotation or 0)


def read_frames(
    path: Path,
    start: int = 0,
    end: int | None = None,
    offset: int = 0,
    index: FrameIndex | None = None,
) -> Iterator[VideoFrame]:
    """Frames `start` <= index < `end` in decode order. A corrupt tail ends the iteration
    (what decoded is kept) instead of raising; a file that decodes nothing raises.

    `offset` is the index of the file's first frame: a chunk cut from a longer video keeps
    the frame numbers of its source. With a seekable `index` of `path`, decoding starts at
    the keyframe before `start` instead of at the first frame (same frames, same times)."""
    for number, time_s, frame in _decode(path, start, end, offset, index):
        yield VideoFrame(number, time_s, _to_bgr(frame))


def probe(path: Path, index: FrameIndex | None = None) -> VideoInfo:
    """Stream properties, with the frame count taken by decoding (containers lie), or from
    a seekable `index` of `path` (whose checks hold it to what decoding gives), in which
    case only the first frame is decoded."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        has_audio = bool(container.streams.audio)
        codec = stream.codec_context.name
        count, last_time, rotation, size = 0, 0.0, 0, None
        base = stream.time_base or Fraction(1, 1)
        origin = stream.start_time or 0
        try:
            for frame in container.decode(stream):
                if size is None:
                    rotation = int(frame.rotation or 0)
                    size = (frame.width, frame.height)
                    if index is not None and index.seekable:
                        count, last_time = index.frame_count, index.time_of(index.pts[-1])
                        break
                count += 1
                if frame.pts is not None:
                    last_time = float((frame.pts - origin) * base)
        except av.error.FFmpegError:
            pass  # a damaged tail: count what decodes
    finally:
        container.close()
    if count == 0 or size is None:
        raise InputError("no decodable video frames", subject=path)
    width, height = size
    if rotation % 180:
        width, height = height, width
    fps = fps or (count / last_time if last_time > 0 else 25.0)
    return VideoInfo(
        source=str(path),
        width=width,
        height=height,
        fps=fps,
        frame_count=count,
        duration_s=max(last_time + 1.0 / fps, count / fps) if fps else last_time,
        has_audio=has_audio,
        rotation=rotation,
        codec=codec,
    )


def probe_indexed(path: Path) -> tuple[VideoInfo, FrameIndex]:
    """The stream's properties and its frame index: one demux and a few decoded frames when
    the index is seekable, a full decode to count the frames when it is not."""
    index = index_video(path)
    return probe(path, index), index


def background_reader(
    path: Path,
    start: int = 0,
    end: int | None = None,
    prefetch: int = 64,
    offset: int = 0,
    index: FrameIndex | None = None,
) -> Prefetcher[VideoFrame]:
    """`read_frames` decoding in a thread, so the models always have the next batch waiting."""
    return Prefetcher(
        lambda: read_frames(path, start, end, offset, index),
        depth=prefetch,
        name="facefleet-decode",
    )


class H264Writer:
    """Annotated frames to an H.264 yuv420p MP4 (video only; `mux` adds the audio)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 20) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # yuv420p needs even dimensions: pad by one pixel rather than fail or crop.
        self.width, self.height = width + width % 2, height + height % 2
        self._container = av.open(str(self.path), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if (w, h) != (self.width, self.height):
            image = cv2.copyMakeBorder(
                image, 0, self.height - h, 0, self.width - w, cv2.BORDER_REPLICATE
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def mux(video_parts: Sequence[Path], out: Path, audio_from: Path | None = None) -> None:
    """Join H.264 parts (no re-encode) and copy the audio of `audio_from` into one MP4.

    Written under a temporary name and renamed, with +faststart so browsers can start
    playing before the whole file has arrived.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".part.mp4")
    output = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        first = av.open(str(video_parts[0]))
        video_out = output.add_stream_from_template(first.streams.video[0])
        first.close()
        audio_in = av.open(str(audio_from)) if audio_from is not None else None
        audio_out = None
        if audio_in is not None and audio_in.streams.audio:
            audio_out = output.add_stream_from_template(audio_in.streams.audio[0])
        offset = 0
        for part in video_parts:
            with av.open(str(part)) as src:
                stream = src.streams.video[0]
                last = 0
                for packet in src.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.pts = (packet.pts or 0) + offset
                    packet.dts += offset
                    last = max(last, packet.pts + (packet.duration or 0))
                    packet.stream = video_out
                    output.mux(packet)
                offset = last
        if audio_in is not None and audio_out is not None:
            for packet in audio_in.demux(audio_in.streams.audio[0]):
                if packet.dts is None:
                    continue
                packet.stream = audio_out
                output.mux(packet)
        if audio_in is not None:
            audio_in.close()
    finally:
        output.close()
    tmp.replace(out)


# 8-bit YUV layouts libx264 stores losslessly as they are.
_LOSSLESS_YUV = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"})
_COLOUR_FIELDS = ("colorspace", "color_range", "color_primaries", "color_trc")


@dataclass(frozen=True)
class LosslessChunk:
    index: int
    start: int
    end: int  # exclusive
    times: list[float]
    path: Path | None  # None when the chunk was not wanted (decoded past, not written)


class _LosslessWriter:
    """One chunk file. 8-bit YUV frames without rotation are stored as decoded (qp 0, the
    source's colour metadata), so converting them to BGR gives the same pixels as converting
    the source's; anything else is stored as its BGR pixels (H.264 RGB, qp 0)."""

    def __init__(
        self, path: Path, fps: float, first: av.VideoFrame, colour: dict[str, object]
    ) -> None:
        self.yuv = first.format.name in _LOSSLESS_YUV and not (first.rotation or 0) % 360
        self._container = av.open(str(path), "w", format="matroska")
        rate = Fraction(fps).limit_denominator(1001000) if fps > 0 else Fraction(25)
        self._stream = self._container.add_stream(
            "libx264" if self.yuv else "libx264rgb", rate=rate
        )
        if self.yuv:
            self._stream.width, self._stream.height = first.width, first.height
            self._stream.pix_fmt = first.format.name
            for field, value in colour.items():
                setattr(self._stream.codec_context, field, value)
        else:
            image = _to_bgr(first)
            self._stream.width, self._stream.height = image.shape[1], image.shape[0]
            self._stream.pix_fmt = "bgr24"
        # ultrafast: several hundred frames/s at 640x360 on one core.
        self._stream.options = {"qp": "0", "preset": "ultrafast"}

    def write(self, frame: av.VideoFrame) -> None:
        if self.yuv:
            frame.pts = None  # the encoder numbers frames itself; times travel in ChunkMeta
            frame.pict_type = av.video.frame.PictureType.NONE
        else:
            frame = av.VideoFrame.from_ndarray(_to_bgr(frame), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()


def cut_lossless(
    path: Path,
    ranges: Sequence[tuple[int, int]],
    out_dir: Path,
    wanted: Callable[[int], bool] = lambda k: True,
) -> Iterator[LosslessChunk]:
    """Decode `path` once and write each frame range [start, end) as its own lossless file
    (`out_dir/chunk-<k>.mkv`), yielded as soon as it is complete. `read_frames` on a chunk
    (offset = its start) gives exactly the BGR frames it gives on the source, whatever the
    source's keyframes, container or rotation. A chunk for which `wanted(k)` is false is
    decoded past but not written. The last range ends where decoding ends."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        context = stream.codec_context
        colour = {f: getattr(context, f) for f in _COLOUR_FIELDS if hasattr(context, f)}
    finally:
        container.close()
    frames = _decode(path, ranges[0][0] if ranges else 0, ranges[-1][1] if ranges else 0)
    try:
        for k, (start, end) in enumerate(ranges):
            target = out_dir / f"chunk-{k:05d}.mkv"
            writer: _LosslessWriter | None = None
            times: list[float] = []
            want = wanted(k)
            try:
                for _, time_s, frame in islice(frames, end - start):
                    if want:
                        writer = writer or _LosslessWriter(target, fps, frame, colour)
                        writer.write(frame)
                    times.append(time_s)
            finally:
                if writer is not None:
                    writer.close()
            if not times:
                return
            yield LosslessChunk(k, start, start + len(times), times, target if want else None)
    finally:
        frames.close()
