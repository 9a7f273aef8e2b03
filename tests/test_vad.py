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
