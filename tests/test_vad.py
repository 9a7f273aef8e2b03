from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg

from tasks.config import VadParams
from tasks.formats import read_rttm, read_segments
from tasks.vad import detect_speech, load_wav, vad_task

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def dev01_wav(sample_wav):
    return sample_wav("montage_dev01.mp4")


def _mask(spans, duration, step=0.01):
    t = np.arange(0, duration, step)
    m = np.zeros(len(t), dtype=bool)
    for a, b in spans:
        m |= (t >= a) & (t < b)
    return m


def test_load_wav_is_float_mono(dev01_wav):
    samples, rate = load_wav(dev01_wav)
    assert rate == 16000 and samples.dtype == np.float32 and samples.ndim == 1
    assert 29.9 < len(samples) / rate < 30.1 and 0 < np.abs(samples).max() <= 1


def test_speech_found_where_the_reference_has_it(dev01_wav):
    segments = detect_speech(dev01_wav, VadParams())
    ref = read_rttm(DATA / "ground_truth" / "montage" / "montage_dev01.rttm")["montage_dev01"]
    hyp = _mask([(s.start, s.end) for s in segments], 30)
    truth = _mask([(t.start, t.end) for t in ref], 30)
    # measured with the defaults: 93 % of reference speech found, 94 % of what is found is reference speech
    assert (hyp & truth).sum() / truth.sum() >= 0.85
    assert (hyp & truth).sum() / hyp.sum() >= 0.85
    assert all(0 <= s.start < s.end <= 30.1 for s in segments)
    assert [s.start for s in segments] == sorted(s.start for s in segments)


def test_silence_has_no_speech(tmp_path):
    wav = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "5", "-c:a", "pcm_s16le", str(wav))
    assert detect_speech(wav, VadParams()) == []


def test_vad_task_writes_segments(dev01_wav, tmp_path):
    out = tmp_path / "speech.json"
    assert vad_task.fn(dev01_wav, out=out, params=VadParams()) == out
    assert read_segments(out) == detect_speech(dev01_wav, VadParams())


def _agreement(a, b, duration) -> float:
    return float((_mask([(s.start, s.end) for s in a], duration) == _mask([(s.start, s.end) for s in b], duration)).mean())


def test_chunk_size_does_not_change_segments(dev01_wav):
    # 10 s chunks: three reads, each a batch of its own rows; the rows, and so the result, stay the same
    assert detect_speech(dev01_wav, VadParams(chunk=10)) == detect_speech(dev01_wav, VadParams())


def test_streamed_vad_matches_whole_file_silero(dev01_wav):
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    samples, rate = load_wav(dev01_wav)
    params = VadParams()
    stamps = get_speech_timestamps(torch.from_numpy(samples), load_silero_vad(), threshold=params.threshold,
                                   sampling_rate=rate, min_speech_duration_ms=250, min_silence_duration_ms=600)
    from tasks.records import Segment
    whole = [Segment(s["start"] / rate, s["end"] / rate) for s in stamps]
    # silero's recurrent state restarts every row: borders may move a little, nothing more
    assert _agreement(detect_speech(dev01_wav, VadParams(chunk=10)), whole, 30) >= 0.97


@pytest.mark.parametrize("rate,channels", [(48000, 8), (8000, 2)])
def test_other_rates_and_channel_counts(dev01_wav, tmp_path, rate, channels):
    from scipy.signal import resample_poly
    import soundfile as sf

    samples, _ = load_wav(dev01_wav)
    x = resample_poly(samples, rate // 1000, 16).astype(np.float32)
    wav = tmp_path / f"multi_{rate}.wav"
    sf.write(wav, np.stack([x * (0.5 + 0.5 * (c % 2)) for c in range(channels)], axis=1), rate, subtype="PCM_16")
    loaded, loaded_rate = load_wav(wav)
    assert loaded_rate == 16000 and abs(len(loaded) - len(samples)) <= 2
    # 8 kHz loses everything above 4 kHz, so it is held to a looser bound
    assert _agreement(detect_speech(wav, VadParams()), detect_speech(dev01_wav, VadParams()), 30) >= (
        0.95 if rate == 48000 else 0.85)


def test_undecodable_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is not audio\n" * 20)
    with pytest.raises(ValueError) as err:
        detect_speech(bad, VadParams())
    assert "not_audio.wav" in str(err.value) and "\n" not in str(err.value)


def test_long_file_is_read_a_chunk_at_a_time(ten_minutes_of_noise, source_reads):
    """10 minutes in 20 s chunks: no read is larger than one chunk plus silero's warm-up, and numpy's
    peak allocation (a few copies of one chunk) stays far under the whole file's 38 MB of float32."""
    import tracemalloc

    wav = ten_minutes_of_noise(0.01)
    reads = source_reads
    params = VadParams(chunk=20)
    tracemalloc.start()
    detect_speech(wav, params)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sum(reads) >= 600 * 16000 and max(reads) <= 22 * 16000  # two 10.24 s rows + 1 s warm-up
    assert peak < 12 * 2**20
