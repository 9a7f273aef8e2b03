"""Audio features per speaker turn: tiny random-init Whisper and AST models saved to disk and loaded through the
real offline path, a workspace written with the pipeline's own writers, and (slow) the real library flow."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from tasks.tools.audio_features import (
    SPEAKERS_PARQUET,
    SUMMARY_JSON,
    TURNS_PARQUET,
    ASTFeatures,
    WhisperFeatures,
    export_audio_features,
    make_extractor,
)
from tasks.video.embed.hf import ModelUnavailable
from tasks.core.formats import read_rttm, write_characters, write_evidence, write_json, write_tracks, write_turns
from tasks.library.subtitles import SubtitleNaming
from tasks.library.view import NAMES_JSON
from tasks.core.records import RunSummary, SpeechTurn, VideoOutputs, VideoResult
from tasks.library.registry import Member, Registry, registry_paths, save_registry
from tasks.core.workspace import Workspace

RATE = 16000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_ast(d: Path, sampling_rate: int = RATE) -> Path:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(0)
    ASTModel(ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       max_length=1024, num_mel_bins=128)).save_pretrained(d)
    ASTFeatureExtractor(max_length=1024, sampling_rate=sampling_rate).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory) -> Path:
    return save_ast(tmp_path_factory.mktemp("tiny-ast"))


@pytest.fixture(scope="module")
def whisper(whisper_dir) -> WhisperFeatures:
    return make_extractor("whisper", whisper_dir)


@pytest.fixture(scope="module")
def ast(ast_dir) -> ASTFeatures:
    return make_extractor("ast", ast_dir)


def tone(seconds: float, hz: float = 220.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32)


# --- extractors ------------------------------------------------------------------------------------

def test_whisper_mean_pools_the_encoder_frames_that_cover_the_audio(whisper, whisper_dir):
    from transformers import WhisperFeatureExtractor, WhisperModel

    audio = tone(1.0)
    vector = whisper.features(audio)
    assert vector.shape == (16,) and vector.dtype == np.float32 and whisper.dim == 16
    assert whisper.rate == RATE and whisper.window == 30.0

    # Directly: 1 s padded to Whisper's 30 s window, 1500 encoder frames of 20 ms, the first 50 cover the tone.
    mel = WhisperFeatureExtractor.from_pretrained(whisper_dir)(audio, sampling_rate=RATE,
                                                                return_tensors="pt").input_features
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        frames = WhisperModel.from_pretrained(whisper_dir).get_encoder()(mel).last_hidden_state[0]
    assert frames.shape == (1500, 16)
    np.testing.assert_allclose(vector, frames[:50].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(vector, frames.mean(0).numpy(), atol=1e-3)  # the padding is left out

    # A turn of a frame and a half keeps two frames.
    part = whisper.features(audio[:480])
    mel = WhisperFeatureExtractor.from_pretrained(whisper_dir)(np.pad(audio[:480], (0, 1120)), sampling_rate=RATE,
                                                                return_tensors="pt").input_features
    with torch.no_grad():
        frames = WhisperModel.from_pretrained(whisper_dir).get_encoder()(mel).last_hidden_state[0]
    # 480 samples are padded to MIN_SECONDS (1600 samples: 5 frames) before encoding.
    np.testing.assert_allclose(part, frames[:5].mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_ast_gives_the_pooler_output_of_the_padded_window(ast, ast_dir):
    from transformers import ASTFeatureExtractor, ASTModel

    audio = noise(2.0)
    vector = ast.features(audio)
    assert vector.shape == (16,) and vector.dtype == np.float32
    assert ast.window == pytest.approx(10.24)
    values = ASTFeatureExtractor.from_pretrained(ast_dir)(audio, sampling_rate=RATE, return_tensors="pt").input_values
    assert values.shape == (1, 1024, 128)
    with torch.no_grad():
        expected = ASTModel.from_pretrained(ast_dir)(input_values=values).pooler_output[0].numpy()
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["whisper", "ast"])
def test_a_long_turn_is_cut_into_windows_averaged_by_length(name, request):
    extractor = request.getfixturevalue(name)
    audio = np.concatenate([tone(15.0, 220), noise(15.0), tone(15.0, 660)])  # 45 s
    step = int(round(extractor.window * RATE))
    pieces = [audio[i:i + step] for i in range(0, len(audio), step)]
    assert len(pieces) == (2 if name == "whisper" else 5)
    expected = sum(len(p) * extractor.features(p) for p in pieces) / len(audio)
    np.testing.assert_allclose(extractor.features(audio), expected, rtol=1e-4, atol=1e-6)


def test_the_model_rate_is_used_after_resampling(tmp_path):
    import torchaudio.functional as AF
    from transformers import ASTFeatureExtractor, ASTModel

    d = save_ast(tmp_path / "ast-8k", sampling_rate=8000)
    extractor = make_extractor("ast", d)
    assert extractor.rate == 8000
    audio = tone(1.5, 440)
    processor, model = ASTFeatureExtractor.from_pretrained(d), ASTModel.from_pretrained(d)

    def direct(samples: np.ndarray) -> np.ndarray:
        values = processor(samples, sampling_rate=8000, return_tensors="pt").input_values
        with torch.no_grad():
            return model(input_values=values).pooler_output[0].numpy()

    resampled = AF.resample(torch.from_numpy(audio), RATE, 8000).numpy()
    assert len(resampled) == 12000
    np.testing.assert_allclose(extractor.features(audio), direct(resampled), rtol=1e-5, atol=1e-6)
    assert not np.allclose(extractor.features(audio), direct(audio), atol=1e-3)


@pytest.mark.parametrize("name", ["whisper", "ast"])
def test_very_short_and_empty_turns(name, request):
    extractor = request.getfixturevalue(name)
    for n in (1, 10, 400, 1599):  # under AST's 25 ms filterbank window, and under MIN_SECONDS
        vector = extractor.features(noise(1.0)[:n])
        assert vector.shape == (16,) and np.isfinite(vector).all()
    # 30 s and 10 ms: the 10 ms piece is padded, and weighs 10 ms.
    long = noise(extractor.window + 0.01)
    step = int(round(extractor.window * RATE))
    expected = (step * extractor.features(long[:step]) + 160 * extractor.features(long[step:])) / len(long)
    np.testing.assert_allclose(extractor.features(long), expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="empty turn"):
        extractor.features(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        extractor.features(np.zeros((2, 100), np.float32))


def test_missing_model_is_a_clear_offline_error(no_network, tmp_path):
    for missing in ("castline-test/no-such-model", str(tmp_path / "nowhere")):
        for backend in ("whisper", "ast"):
            with pytest.raises(ModelUnavailable, match=r"is not available offline: put it in the Hugging Face "
                                                       r"cache or give a local path"):
                make_extractor(backend, missing)
    with pytest.raises(ValueError, match="unknown audio backend 'wav2vec'"):
        make_extractor("wav2vec", "x")


# --- library ---------------------------------------------------------------------------------------

def write_video(ws: Workspace, name: str, vid: str, audio: np.ndarray | None, turns: list[SpeechTurn]) -> VideoOutputs:
    """One processed video as the per-video flow leaves it: stage results in the cache, and its manifest."""
    cache = ws.root / "cache"
    probe = cache / "probe" / vid / "0123456789abcdef.json"
    write_json(probe, {})
    wav = turns_path = None
    if audio is not None:
        wav = cache / "audio" / vid / "w.wav"
        wav.parent.mkdir(parents=True)
        sf.write(wav, audio, RATE, subtype="FLOAT")  # float, so a test can encode the very same samples
        turns_path = write_turns(cache / "diarize" / vid / "d.json", turns, centroids={})
    return VideoOutputs(video=Path(f"/library/{name}"), probe=probe, frames=cache / "frames" / vid / "frames.json",
                        tracks=write_tracks(cache / "track" / vid / "t.json", []),
                        embeddings=cache / "embed" / vid / "e.npy",
                        characters=write_characters(cache / "cluster" / vid / "c.json", []),
                        evidence=write_evidence(cache / "align" / vid / "e.json", []),
                        turns=turns_path, wav=wav, interval=1.0)


@pytest.fixture
def workspace(tmp_path) -> Path:
    """Two videos with audio whose local voices map to library speakers (SPEAKER_00 of both is speaker_001),
    one video without audio and one that failed."""
    ws = Workspace.open(tmp_path / "ws")
    a = write_video(ws, "a.mp4", "a" * 16, np.concatenate([tone(2.0, 220), noise(2.0)]),
                    [SpeechTurn(2.0, 4.0, "SPEAKER_01"), SpeechTurn(0.0, 2.0, "SPEAKER_00"),
                     SpeechTurn(3.0, 3.0, "SPEAKER_01")])  # the empty turn is not in speakers.rttm either
    b = write_video(ws, "b.mp4", "b" * 16, tone(3.0, 330), [SpeechTurn(0.5, 3.0, "SPEAKER_00")])
    c = write_video(ws, "c.mp4", "c" * 16, None, [])
    videos = [VideoResult("a.mp4", True, outputs=a), VideoResult("b.mp4", True, outputs=b),
              VideoResult("c.mp4", True, outputs=c), VideoResult("d.mp4", False, error="bad")]
    write_json(ws.library_dir / "last_run.json", RunSummary(
        "lib", str(ws.root), "2025-01-01T00:00:00+00:00", 1.0, ["a.mp4", "b.mp4", "c.mp4"],
        [{"video": "d.mp4", "error": "bad"}], videos, "report.md", {"backend": "haar", "weights": None, "why": ""}))
    write_json(ws.library_dir / NAMES_JSON, {"gallery": None, "matches": [], "subtitles": None, "voice_links": []})
    members = [Member(v, "k", local, gid, 1.0, np.ones(4, np.float32)) for v, local, gid in
               (("a.mp4", "SPEAKER_00", "speaker_001"), ("a.mp4", "SPEAKER_01", "speaker_000"),
                ("b.mp4", "SPEAKER_00", "speaker_001"))]
    save_registry(registry_paths(ws)[1], Registry("speaker", "cosine", members))
    return ws.root


def test_library_export_rows_speaker_means_and_summary(workspace, whisper, tmp_path):
    calls: list[tuple[int, int]] = []
    summary = export_audio_features(workspace, whisper, tmp_path / "llm", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)

    turns = pq.read_table(tmp_path / "llm" / TURNS_PARQUET)
    assert turns.schema.field("feature").type.list_size == 16
    assert turns.schema.field("feature").type.value_type == "float"
    assert turns.schema.metadata[b"backend"] == b"whisper"
    rows = turns.to_pylist()
    assert [(r["video"], r["speaker"], r["start"], r["end"]) for r in rows] == [
        ("a.mp4", "speaker_001", 0.0, 2.0), ("a.mp4", "speaker_000", 2.0, 4.0), ("b.mp4", "speaker_001", 0.5, 3.0)]
    np.testing.assert_allclose(rows[0]["feature"], whisper.features(tone(2.0, 220)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows[2]["feature"], whisper.features(tone(3.0, 330)[8000:]), rtol=1e-5, atol=1e-6)

    speakers = pq.read_table(tmp_path / "llm" / SPEAKERS_PARQUET).to_pylist()
    assert [(s["speaker"], s["name"], s["seconds"], s["n_turns"]) for s in speakers] == [
        ("speaker_000", None, 2.0, 1), ("speaker_001", None, 4.5, 2)]
    expected = (2.0 * np.array(rows[0]["feature"]) + 2.5 * np.array(rows[2]["feature"])) / 4.5
    np.testing.assert_allclose(speakers[1]["feature"], expected, rtol=1e-5, atol=1e-6)

    assert json.loads((tmp_path / "llm" / SUMMARY_JSON).read_text()) == summary
    assert summary["backend"] == "whisper" and summary["dim"] == 16
    assert summary["counts"] == {"videos": 2, "turns": 3, "speakers": 2, "seconds": 6.5,
                                 "videos_reused": 0, "videos_computed": 2}
    assert summary["videos_without_audio"] == ["c.mp4"]


def test_speakers_carry_the_names_the_subtitles_gave_them(workspace, whisper, tmp_path):
    """The same names as the timelines and the speaker table: a voice the subtitles named is named here too."""
    naming = SubtitleNaming(["a.srt"], {"speaker_001": "ADA"}, {}, [])
    write_json(Path(workspace) / "library" / NAMES_JSON,
               {"gallery": None, "matches": [], "subtitles": naming, "voice_links": []})
    export_audio_features(workspace, whisper, tmp_path / "llm")
    speakers = pq.read_table(tmp_path / "llm" / SPEAKERS_PARQUET).to_pylist()
    assert [(s["speaker"], s["name"]) for s in speakers] == [("speaker_000", None), ("speaker_001", "ADA")]
    turns = pq.read_table(tmp_path / "llm" / TURNS_PARQUET).to_pylist()
    assert [(r["video"], r["speaker"], r["name"]) for r in turns] == [
        ("a.mp4", "speaker_001", "ADA"), ("a.mp4", "speaker_000", None), ("b.mp4", "speaker_001", "ADA")]


def test_a_rerun_reuses_every_video_and_another_model_does_not(workspace, whisper, ast, tmp_path, monkeypatch):
    first = export_audio_features(workspace, whisper, tmp_path / "one")
    cached = {p: p.stat().st_mtime_ns for p in (workspace / "cache" / "audio_features").rglob("*.npy")}
    assert len(cached) == 2

    def no_encoding(samples):
        raise AssertionError("re-encoded a cached turn")

    monkeypatch.setattr(whisper, "features", no_encoding)
    again = export_audio_features(workspace, whisper, tmp_path / "two")
    assert again["counts"]["videos_reused"] == 2 and again["counts"]["videos_computed"] == 0
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    assert (pq.read_table(tmp_path / "two" / TURNS_PARQUET).equals(pq.read_table(tmp_path / "one" / TURNS_PARQUET)))
    assert first["counts"]["turns"] == again["counts"]["turns"]

    other = export_audio_features(workspace, ast, tmp_path / "three")
    assert other["counts"]["videos_computed"] == 2
    assert len(list((workspace / "cache" / "audio_features").rglob("*.npy"))) == 4


def test_cli_reports_a_missing_model_or_workspace_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    (tmp_path / "ws" / "library").mkdir(parents=True)
    r = CliRunner().invoke(app, ["audio-features", str(tmp_path / "ws"), "--backend", "whisper",
                                 "--model", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "is not available offline" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["audio-features", str(tmp_path), "--backend", "whisper", "--model", "x"])
    assert r.exit_code == 2 and "not a castline workspace" in r.stderr
    r = CliRunner().invoke(app, ["audio-features", str(tmp_path / "ws"), "--backend", "mfcc", "--model", "x"])
    assert r.exit_code == 2 and "--backend must be whisper or ast" in r.stderr


@pytest.mark.slow
def test_real_library_flow_then_cli_gives_one_row_per_rttm_turn(bad_library, tmp_path, whisper_dir):
    from cli import castline
    from typer.testing import CliRunner

    from flows.cli import app

    ws = tmp_path / "ws"
    run = castline("run", str(bad_library), "--workspace", str(ws))
    assert run.returncode == 1, run.stdout + run.stderr  # two of its files are broken on purpose

    r = CliRunner().invoke(app, ["audio-features", str(ws), "--backend", "whisper", "--model", str(whisper_dir)])
    assert r.exit_code == 0, r.output
    assert f"written to {ws / 'llm'}" in r.stdout

    # Hamilton is the one video with audio: the failed files have no outputs, video_only.mp4 no audio.
    rows = pq.read_table(ws / "llm" / TURNS_PARQUET).to_pylist()
    rttm = read_rttm(ws / "videos" / "hamilton.mp4" / "speakers.rttm")["hamilton"]
    assert len(rows) == len(rttm) > 0
    for row, turn in zip(rows, rttm):
        assert (row["video"], row["speaker"]) == ("hamilton.mp4", turn.speaker)
        # RTTM keeps milliseconds (start and duration rounded apart).
        assert math.isclose(row["start"], turn.start, abs_tol=1e-3) and math.isclose(row["end"], turn.end, abs_tol=2e-3)
        assert len(row["feature"]) == 16 and np.isfinite(row["feature"]).all()
    summary = json.loads((ws / "llm" / SUMMARY_JSON).read_text())
    assert summary["videos_without_audio"] == ["video_only.mp4"]
    speakers = pq.read_table(ws / "llm" / SPEAKERS_PARQUET).to_pylist()
    assert sorted(s["speaker"] for s in speakers) == sorted({t.speaker for t in rttm})
    assert sum(s["n_turns"] for s in speakers) == len(rttm)
