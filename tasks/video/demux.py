"""Demux: one video file in; its metadata, sampled frames and mono audio out.

In: a media path and DemuxParams. Out: MediaInfo (ffprobe), a frame store (`frames.json` + JPEGs, at a
fixed rate or keyframes only, decoded by a streaming ffmpeg pipe), a mono PCM WAV at the requested rate.
Backend: the ffmpeg/ffprobe executables driven through ffmpeg-python; nothing holds the whole video in memory.
"""
from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from tasks.core.config import DemuxParams
from tasks.core.formats import (
    atomic_dir,
    atomic_path,
    media_info_from_dict,
    read_json,
    write_frames,
    write_json,
)
from tasks.core.records import Frame, MediaInfo, StreamInfo
from tasks.core.stage import Progress, ProgressBar, stage_task

FRAMES_INDEX = "frames.json"
# Files of these kinds are episodes without pictures: their voices are processed, the video stages skipped.
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus"})


class MediaError(Exception):
    """A file castline cannot process; the message is one line a user can act on."""


class NoVideoStreamError(MediaError):
    pass


class NoAudioStreamError(MediaError):
    pass


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value or None


def _rotation(stream: dict) -> int:
    """Display rotation in degrees, from the old `rotate` tag or the newer display-matrix side data."""
    tag = stream.get("tags", {}).get("rotate")
    if tag is not None:
        return int(float(tag)) % 360
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(-float(side["rotation"])) % 360
    return 0


_LOG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


def _ffmpeg_reason(stderr: bytes | None, path: Path) -> str:
    """ffmpeg's error lines, without its `[demuxer @ 0x...]` prefixes and paths, joined on one line."""
    text = (stderr or b"").decode("utf-8", "replace")
    reasons: list[str] = []
    for line in text.splitlines():
        line = _LOG_PREFIX.sub("", line.strip())
        for prefix in (f"{path}: ", f"{path.name}: "):
            line = line.removeprefix(prefix)
        if line and line not in reasons:
            reasons.append(line)
    return "; ".join(reasons[-3:]) or "unknown error"


def check_file(path: str | Path) -> Path:
    """Refuse what is not a readable regular file before anything opens it (a FIFO would block a reader)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"file not found{' (dangling link)' if path.is_symlink() else ''}: {path.name}")
    if not path.is_file():
        raise MediaError(f"not a regular file: {path.name}")
    if path.stat().st_size == 0:
        raise MediaError(f"empty file (0 bytes): {path.name}")
    return path


def probe(path: str | Path) -> MediaInfo:
    """ffprobe a file; raise MediaError with a one-line reason for anything castline cannot use."""
    path = check_file(path)
    try:
        raw = ffmpeg.probe(str(path), v="error")
    except ffmpeg.Error as e:
        raise MediaError(f"not a readable media file ({_ffmpeg_reason(e.stderr, path)}): {path.name}") from None
    except PermissionError:
        raise MediaError(f"permission denied: {path.name}") from None
    streams = []
    for s in raw.get("streams", []):
        kind = s.get("codec_type", "data")
        if kind == "video" and s.get("disposition", {}).get("attached_pic"):
            kind = "cover_art"  # an album cover is not a video stream worth sampling
        streams.append(StreamInfo(
            index=int(s.get("index", len(streams))),
            kind=kind,
            codec=s.get("codec_name", "unknown"),
            width=s.get("width"),
            height=s.get("height"),
            fps=_rate(s.get("r_frame_rate")) if kind == "video" else None,
            avg_fps=_rate(s.get("avg_frame_rate")) if kind == "video" else None,
            rotation=_rotation(s) if kind == "video" else 0,
            sample_rate=int(s["sample_rate"]) if s.get("sample_rate") else None,
            channels=s.get("channels"),
        ))
    fmt = raw.get("format", {})
    duration = float(fmt.get("duration") or 0.0)
    if duration <= 0:
        duration = max((float(s.get("duration") or 0.0) for s in raw.get("streams", [])), default=0.0)
    info = MediaInfo(path=str(path), format_name=fmt.get("format_name", "unknown"), duration=duration,
                     size_bytes=path.stat().st_size, streams=tuple(streams))
    if info.video is None and info.audio is None:
        raise MediaError(f"not a media file (ffprobe found no video or audio stream): {path.name}")
    if info.duration <= 0:
        raise MediaError(f"zero duration: {path.name}")
    return info


def is_audio_file(path: str | Path) -> bool:
    """An audio file by its extension (AUDIO_EXTENSIONS): processed for its voices only, whatever else it holds
    (an album cover, a stray video stream). A video file without a video stream stays an error."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def require_video(info: MediaInfo) -> None:
    if info.video is None:
        raise NoVideoStreamError(f"no video stream (audio only; as .m4a, .wav … its voices would be processed): "
                                 f"{Path(info.path).name}")


def require_audio(info: MediaInfo) -> None:
    """An audio file must have an audio stream: without one castline has nothing to do with it."""
    if info.audio is None:
        raise NoAudioStreamError(f"no audio stream in an audio file: {Path(info.path).name}")


def output_size(info: MediaInfo, max_side: int) -> tuple[int, int]:
    """Size of sampled frames: display size scaled so the long side is <= max_side, both even."""
    require_video(info)
    w, h = info.display_size  # type: ignore[misc]
    scale = min(1.0, max_side / max(w, h))
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def expected_frames(info: MediaInfo, params: DemuxParams) -> int:
    """How many frames sampling should yield (an estimate for keyframes: one per 2 s)."""
    if params.keyframes_only:
        return max(1, int(info.duration / 2))
    return max(1, int(np.ceil(info.duration * params.fps)))


_SHOWINFO = re.compile(r"Parsed_showinfo.*?\bn:\s*(\d+).*?\bpts_time:\s*(-?[\d.]+)")


def iter_frames(info: MediaInfo, params: DemuxParams):
    """Yield (t, RGB uint8 array) for each sampled frame, streaming from one ffmpeg process.

    Timestamps come from ffmpeg's showinfo filter (read on a thread from stderr), so they are the
    presentation times of the frames actually chosen — right for keyframes and VFR input too.
    """
    width, height = output_size(info, params.max_side)
    input_args = {"skip_frame": "nokey"} if params.keyframes_only else {}
    video = ffmpeg.input(info.path, **input_args).video
    if not params.keyframes_only:
        # The first frame of each 1/fps bin, kept with its own timestamp. (ffmpeg's fps filter would
        # relabel a later frame with the bin's start time: content ~0.4 s later than its timestamp.)
        r = params.fps
        video = video.filter("select", f"isnan(prev_selected_t)+gt(floor(t*{r}),floor(prev_selected_t*{r}))")
    video = video.filter("scale", width, height).filter("showinfo")
    out = ffmpeg.output(video, "pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    cmd = ffmpeg.compile(out.global_args("-nostdin", "-hide_banner", "-loglevel", "info"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times: list[float] = []
    errors: list[str] = []
    cond = threading.Condition()

    def read_stderr() -> None:
        for raw in proc.stderr:  # type: ignore[union-attr]
            line = raw.decode("utf-8", "replace")
            m = _SHOWINFO.search(line)
            with cond:
                if m:
                    times.append(float(m.group(2)))
                elif "error" in line.lower() or "invalid" in line.lower():
                    errors.append(line.strip())
                cond.notify_all()
        with cond:
            times.append(float("nan"))  # end marker, so a waiting reader never blocks forever
            cond.notify_all()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    frame_bytes = width * height * 3
    n = 0
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)  # type: ignore[union-attr]
            if len(buf) < frame_bytes:
                break
            with cond:
                cond.wait_for(lambda: len(times) > n)
                t = times[n]
            if t != t:  # nan: stderr ended before this frame's line; fall back to the sampling grid
                t = n / params.fps
            yield t, np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            n += 1
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        rc = proc.wait()
        reader.join(timeout=5)
    if n == 0:
        reason = errors[-1] if errors else f"ffmpeg exited with {rc}"
        raise MediaError(f"no frame could be decoded ({reason}): {Path(info.path).name}")


def sample_frames(info: MediaInfo, out_dir: Path, params: DemuxParams, progress: Progress = None) -> list[Frame]:
    """Write sampled frames as JPEGs plus `frames.json` into out_dir; returns the frame list."""
    total = expected_frames(info, params)
    frames: list[Frame] = []
    encode = [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]
    for i, (t, rgb) in enumerate(iter_frames(info, params)):
        name = f"{i:06d}.jpg"
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), encode)
        if not ok:
            raise MediaError(f"could not encode frame {i} of {Path(info.path).name}")
        (out_dir / name).write_bytes(jpg.tobytes())
        frames.append(Frame(index=i, t=round(t, 4), file=name))
        if progress:
            progress(i + 1, max(total, i + 1))
    write_frames(out_dir / FRAMES_INDEX, frames)
    return frames


def extract_audio(info: MediaInfo, out: Path, sample_rate: int) -> None:
    """Mix the first audio stream down to mono at `sample_rate` as 16-bit PCM WAV (ffmpeg streams it)."""
    if info.audio is None:
        raise NoAudioStreamError(f"no audio stream: {Path(info.path).name}")
    with atomic_path(out) as tmp:
        cmd = (ffmpeg.input(info.path).audio
               .output(str(tmp), format="wav", acodec="pcm_s16le", ac=1, ar=sample_rate)
               .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
               .overwrite_output())
        try:
            cmd.run(capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as e:
            reason = _ffmpeg_reason(e.stderr, Path(info.path))
            raise MediaError(f"audio stream failed to decode ({reason}): {Path(info.path).name}") from None
        if tmp.stat().st_size <= 44:  # a WAV header and no samples
            raise MediaError(f"audio stream decoded to nothing: {Path(info.path).name}")


def describe(info: MediaInfo, params: DemuxParams) -> dict:
    """What castline sees in a file and what it would do with it (for `castline inspect`)."""
    v, a = info.video, info.audio
    plan = []
    audio_file = is_audio_file(info.path)
    if audio_file:
        plan.append("audio file: video stages (frames, detect, track, embed, cluster) skipped, voices only")
    elif v is not None:
        w, h = output_size(info, params.max_side)
        how = "keyframes only" if params.keyframes_only else f"{params.fps:g} frame/s"
        plan.append(f"sample ~{expected_frames(info, params)} frames ({how}) at {w}x{h} -> detect, track, embed, cluster")
    else:
        plan.append("no video stream: castline fails this file (an audio file named .m4a, .wav … is processed for "
                    "its voices)")
    if a is not None:
        plan.append(f"extract mono {params.sample_rate} Hz audio -> voice activity, diarization")
    elif audio_file:
        plan.append("no audio stream: castline fails this audio file")
    else:
        plan.append("no audio stream: audio stages will be skipped")
    return {
        "file": info.path,
        "container": info.format_name,
        "duration_s": round(info.duration, 3),
        "size_bytes": info.size_bytes,
        "video": None if v is None else {
            "codec": v.codec, "size": f"{v.width}x{v.height}", "fps": v.fps, "avg_fps": v.avg_fps,
            "vfr": info.vfr, "rotation": v.rotation},
        "audio": None if a is None else {"codec": a.codec, "sample_rate": a.sample_rate, "channels": a.channels},
        "other_streams": [s.kind for s in info.streams if s.kind not in ("video", "audio")],
        "plan": plan,
    }


# --- Prefect tasks -------------------------------------------------------------------------------

@stage_task("probe")
def probe_task(video: Path, *, out: Path) -> None:
    write_json(out, probe(video))


def load_media_info(probe_path: Path, video: Path) -> MediaInfo:
    """The stored probe, pointed at where the content lives now (the cache is keyed by content)."""
    return replace(media_info_from_dict(read_json(probe_path)), path=str(video))


@stage_task("frames")
def frames_task(video: Path, probe_path: Path, *, out: Path, params: DemuxParams) -> None:
    """`out` is the frame store's index; the whole folder appears at once, by rename."""
    info = load_media_info(probe_path, video)
    require_video(info)
    bar = ProgressBar(f"frames {Path(info.path).name}")
    with atomic_dir(out.parent) as tmp:
        sample_frames(info, tmp, params, bar)
    bar.close()


@stage_task("audio")
def audio_task(video: Path, probe_path: Path, *, out: Path, sample_rate: int) -> None:
    extract_audio(load_media_info(probe_path, video), out, sample_rate)
