"""Annotated videos play in a real browser (headless Chromium from Debian)."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from facefleet.core.pipeline import FacePipeline
from facefleet.core.video_pipeline import run_video
from tests.conftest import make_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><html><body><pre id="out">pending</pre>
<video id="v" src="video.mp4" muted playsinline preload="auto"></video>
<script>
const v = document.getElementById('v'), out = document.getElementById('out');
v.addEventListener('error', () => { out.textContent = 'ERROR ' + (v.error && v.error.code); });
v.addEventListener('loadeddata', () => { v.currentTime = Math.min(1.0, v.duration / 2); });
v.addEventListener('seeked', () => {
  const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0;
  for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
  out.textContent = 'OK ' + v.readyState + ' ' + v.videoWidth + ' ' + v.videoHeight + ' ' +
    (s / (d.length / 4 * 3)).toFixed(1);
});
</script></body></html>"""


def play_in_chromium(video: Path, workdir: Path) -> tuple[int, int, int, float]:
    """(readyState, width, height, mean pixel value of a decoded frame)."""
    site = workdir / "site"
    site.mkdir()
    shutil.copy(video, site / "video.mp4")
    (site / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={workdir / 'profile'}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        server.shutdown()
    text = dom.split('<pre id="out">', 1)[1].split("<", 1)[0]
    assert text.startswith("OK"), f"the browser could not play the video: {text}"
    _, state, width, height, mean = text.split()
    return int(state), int(width), int(height), float(mean)


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; CI does)"
)


@needs_chromium
def test_annotated_clip_plays_in_chromium(tmp_path: Path, retinaface, astronaut_bgr) -> None:
    import cv2
    import numpy as np

    head = cv2.resize(astronaut_bgr, (200, 200))

    def draw(k: int) -> np.ndarray:
        frame = np.full((241, 321, 3), 90, np.uint8)  # odd size: padded to even for H.264
        frame[20:220, 10 + k : 210 + k] = head
        return frame

    # 4:4:4 allows an odd size; the deliverable must be 4:2:0, so it is padded to even.
    clip = make_video(tmp_path / "in.mp4", frames=40, size=(321, 241), draw=draw, pix_fmt="yuv444p")
    run_video(clip, FacePipeline(detector=retinaface), tmp_path / "out.mp4")
    state, width, height, mean = play_in_chromium(tmp_path / "out.mp4", tmp_path)
    assert state >= 2 and (width, height) == (322, 242) and mean > 20


@needs_chromium
@pytest.mark.data
def test_real_case_output_plays_in_chromium(data_root: Path, tmp_path: Path, retinaface) -> None:
    source = data_root / "videos" / "obama_curry_whitehouse" / "obama_curry.mp4"
    run_video(source, FacePipeline(detector=retinaface), tmp_path / "out.mp4")
    state, width, height, mean = play_in_chromium(tmp_path / "out.mp4", tmp_path)
    assert state >= 2 and (width, height) == (854, 480) and mean > 20
