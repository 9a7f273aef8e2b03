from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tasks.config import DiarizeParams, VadParams
from tasks.diarize import diarize, diarize_task, segment_windows
from tasks.formats import read_centroids, read_rttm, read_turns, write_segments
from tasks.records import Segment
from tasks.vad import detect_speech

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def dev00(sample_wav):
    """montage_dev00's audio, its speech segments and its diarization with the default parameters."""
    wav = sample_wav("montage_dev00.mp4")
    speech = detect_speech(wav, VadParams())
    return wav, speech, *diarize(wav, speech, DiarizeParams())


def _der(ref, hyp) -> float:
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSegment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        ann = Annotation()
        for i, t in enumerate(turns):
            ann[PSegment(t.start, t.end), i] = t.speaker
        return ann

    return DiarizationErrorRate(collar=0.25, skip_overlap=False)(annotation(ref), annotation(hyp))


def test_two_speakers_found_with_measured_error(dev00):
    _, _, turns, centroids = dev00
    ref = read_rttm(DATA / "ground_truth" / "montage" / "montage_dev00.rttm")["montage_dev00"]
    assert 1 <= len(centroids) <= 3
    # measured: 24.7 % (18.7 % missed by the VAD, 5.7 % confusion); one merged speaker scores about 43 %
    assert _der(ref, turns) < 0.32


def test_turns_are_ordered_labelled_and_inside_speech(dev00):
    _, speech, turns, centroids = dev00
    labels = list(dict.fromkeys(t.speaker for t in turns))
    assert labels == [f"SPEAKER_{i:02d}" for i in range(len(labels))] == list(centroids)
    assert all(any(s.start - 1e-3 <= t.start < t.end <= s.end + 1e-3 for s in speech) for t in turns)
    for v in centroids.values():
        assert v.dtype == np.float32 and v.shape == (256,) and abs(np.linalg.norm(v) - 1) < 1e-4


def test_no_speech_no_turns(dev00):
    wav = dev00[0]
    assert diarize(wav, [], DiarizeParams()) == ([], {})


def test_silence_with_a_speech_segment_still_gives_one_speaker(tmp_path):
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(3 * 16000, dtype=np.int16), 16000, subtype="PCM_16")
    turns, centroids = diarize(wav, [Segment(0.5, 2.5)], DiarizeParams())
    assert [t.speaker for t in turns] == ["SPEAKER_00"] and list(centroids) == ["SPEAKER_00"]


def test_file_shorter_than_one_window(dev00, tmp_path):
    samples, rate = sf.read(dev00[0], dtype="int16")
    wav = tmp_path / "short.wav"
    sf.write(wav, samples[14 * rate:15 * rate], rate, subtype="PCM_16")  # rose_leslie, 1 s
    params = DiarizeParams()
    assert params.window > 1
    turns, centroids = diarize(wav, [Segment(0.0, 1.0)], params)
    assert [(t.start, t.end, t.speaker) for t in turns] == [(0.0, 1.0, "SPEAKER_00")]
    assert centroids["SPEAKER_00"].shape == (256,)


def test_windows_cover_each_segment():
    windows = segment_windows(Segment(1.0, 4.2), 1.5, 0.5)
    assert windows[0] == (1.0, 2.5) and windows[-1] == (2.7, 4.2)
    assert all(abs((b - a) - 1.5) < 1e-9 for a, b in windows)
    assert segment_windows(Segment(1.0, 1.4), 1.5, 0.5) == [(1.0, 1.4)]


def test_max_speakers_bounds_the_count(dev00):
    wav, speech, *_ = dev00
    turns, centroids = diarize(wav, speech, DiarizeParams(threshold=0.5, max_speakers=2))
    assert len(centroids) <= 2 and {t.speaker for t in turns} == set(centroids)


def test_diarize_task_writes_turns_and_centroids(dev00, tmp_path):
    wav, speech, turns, centroids = dev00
    speech_path = write_segments(tmp_path / "speech.json", speech)
    out = tmp_path / "turns.json"
    assert diarize_task.fn(wav, speech_path, out=out, params=DiarizeParams()) == out
    assert read_turns(out) == turns
    stored = read_centroids(out)
    assert stored.keys() == centroids.keys()
    assert all(np.allclose(stored[k], centroids[k], atol=1e-4) for k in centroids)


def test_streamed_embeddings_match_in_memory(dev00):
    from tasks.audio_stream import AudioStream
    from tasks.diarize import _speech_gain, embed_stream, embed_windows
    from tasks.vad import load_wav

    wav, speech, *_ = dev00
    windows = [w for s in speech for w in segment_windows(s, 1.5, 0.5)]
    with AudioStream(wav) as stream:
        gain = _speech_gain(stream, speech, 7)
        assert abs(gain - _speech_gain(stream, speech, 300)) < 1e-6 * gain
        streamed = embed_stream(stream, windows, gain, 7)  # 5 blocks, windows crossing their borders
    whole = embed_windows(load_wav(wav)[0] * gain, windows)
    assert np.abs(streamed - whole).max() < 1e-4


def test_two_stage_clustering_with_small_chunks(dev00):
    wav, speech, turns, centroids = dev00
    ref = read_rttm(DATA / "ground_truth" / "montage" / "montage_dev00.rttm")["montage_dev00"]
    # 10 s chunks, three of them: clustered within each, then across (measured 25.1 %, as in one chunk)
    chunked, chunked_centroids = diarize(wav, speech, DiarizeParams(chunk=10))
    assert 1 <= len(chunked_centroids) <= 3 and _der(ref, chunked) < 0.32
    assert _der(turns, chunked) < 0.1


def test_stereo_48k_input(dev00, tmp_path):
    from scipy.signal import resample_poly

    samples, rate = sf.read(dev00[0], dtype="float32")
    x = resample_poly(samples, 3, 1).astype(np.float32)
    wav = tmp_path / "stereo48k.wav"
    sf.write(wav, np.stack([x, 0.3 * x], axis=1), 48000, subtype="PCM_16")
    turns, centroids = diarize(wav, dev00[1], DiarizeParams())
    assert _der(dev00[2], turns) < 0.1 and len(centroids) == len(dev00[3])


def test_silence_file_gives_no_turns(tmp_path):
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(20 * 16000, dtype=np.int16), 16000, subtype="PCM_16")
    speech = detect_speech(wav, VadParams())
    assert speech == [] and diarize(wav, speech, DiarizeParams()) == ([], {})


def test_undecodable_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(ValueError) as err:
        diarize(bad, [Segment(0.0, 1.0)], DiarizeParams())
    assert "broken.wav" in str(err.value) and "\n" not in str(err.value)


def test_only_chunks_with_speech_are_read(ten_minutes_of_noise, source_reads):
    """A 10-minute file with speech in two places: reads cover those windows, never the whole file."""
    wav = ten_minutes_of_noise(0.05)
    reads = source_reads
    turns, _ = diarize(wav, [Segment(10.0, 14.0), Segment(400.0, 402.0)], DiarizeParams(chunk=60))
    assert turns and max(reads) <= 6 * 16000 and sum(reads) <= 20 * 16000
