"""Shared fixtures: the repo's sample media, generated bad inputs, and an offline environment."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.core.offline import configure
from tasks.core.records import TimelineFiles, VideoOutputs

configure()

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SAMPLE = DATA / "sample"


def pytest_sessionfinish(session, exitstatus):
    """Stop Prefect's temporary API server of the in-process flow tests now. Left to Prefect's atexit hook, it
    logs "Stopping temporary server" after pytest has closed the stream its console handler writes to, and
    the run ends in a "--- Logging error --- ValueError: I/O operation on closed file" traceback. Its log and
    event workers are drained first, or they send to the stopped server ("Error logging to API")."""
    import sys

    if "prefect.server.api.server" in sys.modules:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
        from prefect.server.api.server import SubprocessASGIServer

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()


def published(timeline_json: Path) -> VideoOutputs:
    """A succeeded video's manifest whose one real file is the timeline.json beside it (for the readers of
    timelines: artifacts, reports); its stage results are never opened."""
    folder, stage = timeline_json.parent, timeline_json.parent / "cache"
    return VideoOutputs(stage, stage, stage, stage, stage, stage, stage, turns=None, wav=None, interval=1.0,
                        timeline=TimelineFiles(timeline_json, folder / "timeline.csv", folder / "speech.rttm",
                                               folder / "speakers.rttm", folder))


def latest_artifact_data(key: str) -> str:
    """What the test session's Prefect server holds as the latest version of an artifact key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with get_client(sync_client=True) as client:
        [latest] = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])))
    return latest.data


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Small generated files, good and bad, made once per test session from the sample media."""
    d = tmp_path_factory.mktemp("media")
    ffmpeg("-i", str(SAMPLE / "megamind.avi"), "-t", "3", "-an", "-c:v", "libx264", "-preset", "ultrafast",
           str(d / "video_only.mp4"))
    ffmpeg("-i", str(SAMPLE / "montage_dev00.mp4"), "-vn", "-c:a", "aac", str(d / "audio_only.m4a"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=5", "-t", "0.01", str(d / "one_frame.mp4"))
    data = (SAMPLE / "hamilton.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 4])
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    (d / "empty.mp4").write_bytes(b"")
    return d


@pytest.fixture
def bad_library(tmp_path, media_dir) -> Path:
    """A library with one good clip and the three bad cases of the spine issue."""
    lib = tmp_path / "library"
    lib.mkdir()
    shutil.copy(SAMPLE / "hamilton.mp4", lib / "hamilton.mp4")
    for name in ("truncated.mp4", "text.mp4", "video_only.mp4"):
        shutil.copy(media_dir / name, lib / name)
    return lib


@pytest.fixture(scope="session")
def frame_store(tmp_path_factory):
    """frame_store("hamilton.mp4") -> frames.json of that sample video, sampled once per session by
    the demux stage itself at its default rate."""
    from tasks.core.config import DemuxParams
    from tasks.video.demux import FRAMES_INDEX, probe, sample_frames

    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(Path(name).stem)
            sample_frames(probe(SAMPLE / name), out, DemuxParams())
            made[name] = out / FRAMES_INDEX
        return made[name]

    return make


@pytest.fixture(scope="session")
def sample_wav(tmp_path_factory):
    """sample_wav("montage_dev00.mp4") -> its 16 kHz mono WAV, extracted once by the demux stage."""
    from tasks.video.demux import extract_audio, probe

    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(Path(name).stem) / f"{Path(name).stem}.wav"
            extract_audio(probe(SAMPLE / name), out, 16000)
            made[name] = out
        return made[name]

    return make


@pytest.fixture
def ten_minutes_of_noise(tmp_path):
    """ten_minutes_of_noise(amplitude) -> a 10-minute 16 kHz WAV of Gaussian noise, written a minute at a time."""
    import numpy as np
    import soundfile as sf

    def make(amplitude: float) -> Path:
        wav = tmp_path / "ten_minutes.wav"
        rng = np.random.default_rng(0)
        with sf.SoundFile(wav, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
            for _ in range(10):
                f.write((rng.standard_normal(60 * 16000) * amplitude).astype(np.float32))
        return wav

    return make


@pytest.fixture
def source_reads(monkeypatch) -> list[int]:
    """The sample counts of every read the audio stream makes from its source, in order."""
    from tasks.core.audio_stream import AudioStream

    reads: list[int] = []
    real = AudioStream._read_source

    def spy(self, start, n):
        reads.append(n)
        return real(self, start, n)

    monkeypatch.setattr(AudioStream, "_read_source", spy)
    return reads


@pytest.fixture(scope="session")
def montage_store(frame_store) -> Path:
    """frames.json of montage_dev00 (two ground-truth faces on most frames)."""
    return frame_store("montage_dev00.mp4")


@pytest.fixture(scope="session")
def hamilton_store(frame_store) -> Path:
    """frames.json of the Hamilton clip (stage performer, audience cut-aways)."""
    return frame_store("hamilton.mp4")


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models: the test machines are shared, and such models gain nothing from more threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_network(monkeypatch):
    """Offline mode on, and any socket connection fails the test: a model must not even try the hub."""
    import socket

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised Whisper (16-d encoder) saved as a local model folder."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                           max_source_positions=1500, max_target_positions=32, vocab_size=100,
                           pad_token_id=1, bos_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    d = tmp_path_factory.mktemp("tiny-whisper")
    WhisperModel(config).save_pretrained(d)
    WhisperFeatureExtractor(chunk_length=30).save_pretrained(d)
    return d
