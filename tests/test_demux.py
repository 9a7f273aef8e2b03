import wave
from dataclasses import replace

import numpy as np
import pytest

from tasks.core.config import DemuxParams
from tasks.video.demux import (
    MediaError,
    NoAudioStreamError,
    NoVideoStreamError,
    describe,
    extract_audio,
    output_size,
    probe,
    require_video,
    sample_frames,
)
from tasks.core.formats import read_frames


def test_probe_reads_streams(sample_dir):
    info = probe(sample_dir / "hamilton.mp4")
    assert info.video.codec == "h264" and (info.video.width, info.video.height) == (640, 360)
    assert info.audio.sample_rate == 44100 and info.audio.channels == 2
    assert 9.9 < info.duration < 10.1
    assert not info.vfr and info.video.rotation == 0


@pytest.mark.parametrize("name, fragment", [
    ("truncated.mp4", "moov atom not found"),
    ("text.mp4", "not a"),
    ("empty.mp4", "empty file"),
])
def test_bad_files_give_one_line_reasons(media_dir, name, fragment):
    with pytest.raises(MediaError) as err:
        probe(media_dir / name)
    msg = str(err.value)
    assert fragment in msg and name in msg and "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        probe(tmp_path / "nope.mp4")


def test_audio_only_file_has_no_video(media_dir):
    info = probe(media_dir / "audio_only.m4a")
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        require_video(info)


def test_audio_files_are_known_by_extension_and_inspected_as_voices_only(media_dir):
    from tasks.video.demux import AUDIO_EXTENSIONS, is_audio_file, require_audio

    assert AUDIO_EXTENSIONS == {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus"}
    assert is_audio_file("ep1.WAV") and is_audio_file("a/b.opus") and not is_audio_file("ep1.mp4")
    info = probe(media_dir / "audio_only.m4a")
    require_audio(info)
    plan = describe(info, DemuxParams())["plan"]
    assert plan[0].startswith("audio file: video stages") and "diarization" in plan[1]
    with pytest.raises(NoAudioStreamError, match="no audio stream in an audio file: silent.wav"):
        require_audio(replace(info, path="silent.wav", streams=()))
    with pytest.raises(NoVideoStreamError, match=r"as \.m4a, \.wav … its voices would be processed"):
        require_video(replace(info, path="song.mp4"))


def test_video_only_file_has_no_audio(media_dir, tmp_path):
    info = probe(media_dir / "video_only.mp4")
    assert info.audio is None
    assert "audio stages will be skipped" in " ".join(describe(info, DemuxParams())["plan"])
    with pytest.raises(NoAudioStreamError):
        extract_audio(info, tmp_path / "a.wav", 16000)
    assert not (tmp_path / "a.wav").exists()


def test_sample_frames_at_rate(sample_dir, tmp_path):
    info = probe(sample_dir / "montage_dev00.mp4")
    frames = sample_frames(info, tmp_path, DemuxParams(fps=2, max_side=320))
    assert len(frames) == 60
    assert [f.t for f in frames[:3]] == [0.0, 0.5, 1.0]
    assert read_frames(tmp_path / "frames.json") == frames
    import cv2
    img = cv2.imread(str(tmp_path / frames[0].file))
    assert img.shape == (180, 320, 3)


def test_keyframes_only_uses_real_timestamps(sample_dir, tmp_path):
    info = probe(sample_dir / "hamilton.mp4")
    frames = sample_frames(info, tmp_path, DemuxParams(keyframes_only=True))
    times = [f.t for f in frames]
    assert 2 <= len(frames) < 20 and times == sorted(times)
    assert any(abs(t - round(t)) > 0.01 for t in times)  # not a fixed 1 s grid


def test_output_size_keeps_aspect_and_even():
    from tasks.core.records import MediaInfo, StreamInfo
    info = MediaInfo("x", "mp4", 1.0, 1, (StreamInfo(0, "video", "h264", 1920, 1080, rotation=90),))
    assert output_size(info, 960) == (540, 960)


def test_extract_audio_mono_16k(sample_dir, tmp_path):
    info = probe(sample_dir / "megamind.avi")  # AC3 48 kHz stereo in the source
    out = tmp_path / "a.wav"
    extract_audio(info, out, 16000)
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 16000, 2)
        n = w.getnframes()
        samples = np.frombuffer(w.readframes(n), np.int16)
    assert abs(n / 16000 - info.duration) < 0.2
    assert np.abs(samples).max() > 1000  # real sound, not silence
