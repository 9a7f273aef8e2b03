"""tasks/tools/evaluate.py on tiny synthetic workspaces whose scores are known by construction."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.tools.evaluate import (
    box_scale,
    evaluate_workspace,
    format_report,
    match_box,
    truth_frame,
)
from tasks.core.formats import read_json, write_characters, write_json, write_rttm, write_tracks
from tasks.core.records import Box, Character, SpeechTurn, Track

REPO = Path(__file__).resolve().parents[1]
FPS, DURATION = 10, 4.0
FACES = {"alice": [10, 10, 60, 70], "bob": [200, 10, 250, 70]}
SPEAKERS = {"SPK_A": "alice", "SPK_B": "bob"}
# Ground truth of every synthetic episode: alice speaks for 2 s, then bob for 2 s.
TRUTH_TURNS = [(0.0, 2.0, "SPK_A"), (2.0, 4.0, "SPK_B")]


def make_truth(truth_dir: Path, stem: str, hidden: dict[str, range] | None = None,
               truth_turns: list[tuple[float, float, str]] = TRUTH_TURNS) -> None:
    """Ground truth JSON + RTTM: both faces on every frame, except `hidden` identity → frames."""
    hidden = hidden or {}
    n = int(DURATION * FPS)
    frames = [{"frame": f, "start": f / FPS, "end": (f + 1) / FPS,
               "visible": [{"identity": i, "face_box": box, "role": "speaker"} for i, box in FACES.items()
                           if f not in hidden.get(i, ())]} for f in range(n)]
    turns = [{"start": s, "end": e, "speaker": spk, "identity": SPEAKERS[spk]} for s, e, spk in truth_turns]
    write_json(truth_dir / f"{stem}.json", {
        "episode_id": stem, "fps": FPS, "duration": DURATION, "width": 640, "height": 360, "n_frames": n,
        "speaker_to_identity": SPEAKERS, "turns": turns, "frames": frames})
    write_rttm(truth_dir / f"{stem}.rttm", stem, [SpeechTurn(s, e, SPEAKERS[spk]) for s, e, spk in truth_turns])


def face_track(track_id: int, identity: str, times=(0.0, 1.0, 2.0, 3.0), shift: float = 2.0) -> Track:
    """A predicted track on `identity`'s face, a little off the annotated box (IoU well above 0.3)."""
    x1, y1, x2, y2 = FACES[identity]
    boxes = tuple(Box(frame=k, t=t, x1=x1 + shift, y1=y1 + shift, x2=x2 + shift, y2=y2 + shift, score=0.99)
                  for k, t in enumerate(times))
    return Track(track_id=track_id, boxes=boxes)


def make_video(ws: Path, stem: str, tracks: list[Track], characters: dict[str, list[int]],
               speakers: list[tuple[float, float, str]], speech: list[tuple[float, float, str]]) -> None:
    d = ws / "videos" / f"{stem}.mp4"
    write_tracks(d / "tracks.json", tracks, shots=[0])
    write_characters(d / "characters.json", [Character(cid, tuple(tids)) for cid, tids in characters.items()])
    write_rttm(d / "speakers.rttm", stem, [SpeechTurn(*t) for t in speakers])
    write_rttm(d / "speech.rttm", stem, [SpeechTurn(*t) for t in speech])


PERFECT_SPEAKERS = [(0.0, 2.0, "speaker_000"), (2.0, 4.0, "speaker_001")]
PERFECT_SPEECH = [(0.0, 2.0, "character_000"), (2.0, 4.0, "character_001")]


@pytest.fixture
def dirs(tmp_path):
    ws, truth = tmp_path / "ws", tmp_path / "truth"
    truth.mkdir()
    return ws, truth


def test_perfect_prediction_scores_perfectly_and_writes_eval_json(dirs):
    ws, truth = dirs
    make_truth(truth, "ep1")
    make_video(ws, "ep1", [face_track(0, "alice"), face_track(1, "bob")],
               {"character_000": [0], "character_001": [1]}, PERFECT_SPEAKERS, PERFECT_SPEECH)
    make_video(ws, "no_truth", [face_track(0, "alice")], {"character_000": [0]}, [], [])  # ignored

    r = evaluate_workspace(ws, truth)
    assert r["videos"] == ["ep1"]
    f = r["faces"]["episodes"]["ep1"]
    assert f["wcp"] == 1.0 and f["nmi"] == pytest.approx(1.0) and f["inverse_purity"] == 1.0
    assert (f["predicted_characters"], f["true_characters"], f["unmatched_boxes"]) == (2, 2, 0)
    d = r["diarization"]
    assert d["files"]["ep1"]["der"] == 0.0 and d["files"]["ep1"]["jer"] == 0.0
    assert d["pooled"]["der"] == 0.0 and d["cross_file"]["der"] == 0.0
    a = r["alignment"]["pooled"]
    assert a["right"] == pytest.approx(1.0) and a["speech_seconds"] == pytest.approx(4.0)
    assert read_json(ws / "library" / "eval.json")["faces"]["pooled"]["wcp"] == 1.0
    report = format_report(r)
    assert "CROSS-FILE" in report and "ep1" in report and "no_truth" not in report


def test_merging_two_identities_halves_purity(dirs):
    ws, truth = dirs
    make_truth(truth, "ep1")
    make_video(ws, "ep1", [face_track(0, "alice"), face_track(1, "bob")],
               {"character_000": [0, 1]}, PERFECT_SPEAKERS, PERFECT_SPEECH)
    f = evaluate_workspace(ws, truth, write=False)["faces"]["episodes"]["ep1"]
    assert f["wcp"] == pytest.approx(0.5) and f["nmi"] == pytest.approx(0.0)
    assert f["inverse_purity"] == 1.0  # merging does not split anyone
    assert (f["predicted_characters"], f["true_characters"]) == (1, 2)


def test_person_split_across_episodes_lowers_pooled_scores_only(dirs):
    ws, truth = dirs
    for stem in ("ep1", "ep2"):
        make_truth(truth, stem)
    make_video(ws, "ep1", [face_track(0, "alice"), face_track(1, "bob")],
               {"character_000": [0], "character_001": [1]}, PERFECT_SPEAKERS, PERFECT_SPEECH)
    # Episode 2 calls alice by a new library id: right within the episode, wrong across the library.
    make_video(ws, "ep2", [face_track(0, "alice"), face_track(1, "bob")],
               {"character_002": [0], "character_001": [1]}, PERFECT_SPEAKERS,
               [(0.0, 2.0, "character_002"), (2.0, 4.0, "character_001")])
    faces = evaluate_workspace(ws, truth, write=False)["faces"]
    for stem in ("ep1", "ep2"):
        assert faces["episodes"][stem]["nmi"] == pytest.approx(1.0)
    pooled = faces["pooled"]
    assert pooled["nmi"] < 0.9 and pooled["wcp"] == 1.0
    assert pooled["inverse_purity"] == pytest.approx(0.75)  # half of alice sits outside her main cluster
    assert (pooled["predicted_characters"], pooled["true_characters"]) == (3, 2)
    assert pooled["clusters_per_identity"] == {"alice": 2, "bob": 1}


def test_cross_file_der_counts_labels_that_swap_between_files(dirs):
    ws, truth = dirs
    for stem in ("ep1", "ep2"):
        make_truth(truth, stem)
    chars = {"character_000": [0], "character_001": [1]}
    tracks = [face_track(0, "alice"), face_track(1, "bob")]
    make_video(ws, "ep1", tracks, chars, PERFECT_SPEAKERS, PERFECT_SPEECH)
    make_video(ws, "ep2", tracks, chars, [(0.0, 2.0, "speaker_001"), (2.0, 4.0, "speaker_000")], PERFECT_SPEECH)
    d = evaluate_workspace(ws, truth, write=False)["diarization"]
    assert d["files"]["ep1"]["der"] == 0.0 and d["files"]["ep2"]["der"] == 0.0 and d["pooled"]["der"] == 0.0
    # On one timeline the best one-to-one mapping can only be right in one of the two files.
    assert d["cross_file"]["der"] == pytest.approx(0.5, abs=0.1)
    assert d["cross_file"]["confusion"] > 0.4


def test_alignment_fractions_are_exact(dirs):
    ws, truth = dirs
    # Alice's face is hidden from 1.5 s on (frames 15-19) except where her photo comes back.
    make_truth(truth, "ep1", hidden={"alice": range(15, 20)})
    make_video(ws, "ep1", [face_track(0, "alice", times=(0.0, 1.0)), face_track(1, "bob")],
               {"character_000": [0], "character_001": [1]}, PERFECT_SPEAKERS,
               [(0.0, 1.45, "character_000"),       # alice's turn, right face: 1.45 s
                (1.45, 2.0, "offscreen_speaker_000"),  # off-screen: 0.05 s visible + 0.5 s hidden
                (2.0, 3.0, "character_000"),        # bob's turn given alice's face: 1 s wrong
                (3.5, 4.0, "offscreen_speaker_001")])  # bob visible: 0.5 s off-screen while visible
    a = evaluate_workspace(ws, truth, write=False)["alignment"]["episodes"]["ep1"]
    assert a["speech_seconds"] == pytest.approx(4.0)
    assert a["right"] == pytest.approx(1.45 / 4)
    assert a["wrong"] == pytest.approx(1.0 / 4)
    assert a["offscreen"] == pytest.approx(1.05 / 4)
    assert a["missed"] == pytest.approx(0.5 / 4)
    assert a["offscreen_visible_seconds"] == pytest.approx(0.55)
    assert a["offscreen_not_visible_seconds"] == pytest.approx(0.5)
    assert a["wrong_co_speaker"] == 0.0  # alice is silent during bob's turn: a plain wrong face


def test_wrong_face_of_someone_speaking_at_once_is_told_apart(dirs):
    ws, truth = dirs
    # Bob speaks over alice from 2 s to 3 s, then alone; castline hears alice alone until 3.5 s.
    make_truth(truth, "ep1", truth_turns=[(0.0, 3.0, "SPK_A"), (2.0, 4.0, "SPK_B")])
    make_video(ws, "ep1", [face_track(0, "alice"), face_track(1, "bob")],
               {"character_000": [0], "character_001": [1]}, PERFECT_SPEAKERS,
               [(0.0, 3.5, "character_000"), (3.5, 4.0, "character_001")])
    r = evaluate_workspace(ws, truth, write=False)
    a = r["alignment"]["episodes"]["ep1"]
    assert a["speech_seconds"] == pytest.approx(5.0)
    assert a["right"] == pytest.approx(3.5 / 5)
    # Bob's 1.5 s under alice's face: 1 s while alice speaks too, 0.5 s after she stopped.
    assert a["wrong"] == pytest.approx(1.5 / 5)
    assert a["wrong_co_speaker"] == pytest.approx(1.0 / 5)
    assert r["alignment"]["pooled"]["wrong_co_speaker"] == pytest.approx(1.0 / 5)
    assert "co-speaker" in format_report(r)


def test_overlapped_speech_bounds_what_one_label_at_a_time_can_score():
    from tasks.tools.evaluate import overlap_share
    # 4 s of speech, of which 1 s is a second voice over the first: at most 3 of the 4 s can be right.
    turns = [SpeechTurn(0.0, 3.0, "a"), SpeechTurn(2.0, 3.0, "b")]
    assert overlap_share(turns) == pytest.approx(1.0 / 4)
    assert overlap_share([SpeechTurn(0.0, 1.0, "a"), SpeechTurn(0.0, 1.0, "b"), SpeechTurn(0.0, 1.0, "c")]) \
        == pytest.approx(2.0 / 3)
    assert overlap_share([]) == 0.0


def test_unmatched_boxes_are_counted_not_scored(dirs):
    ws, truth = dirs
    make_truth(truth, "ep1")
    stray = Track(2, (Box(0, 0.0, 400, 200, 450, 260, 0.9),))  # nothing annotated there
    make_video(ws, "ep1", [face_track(0, "alice"), face_track(1, "bob"), stray, face_track(3, "bob")],
               {"character_000": [0], "character_001": [1], "character_002": [2]},
               PERFECT_SPEAKERS, PERFECT_SPEECH)
    f = evaluate_workspace(ws, truth, write=False)["faces"]["episodes"]["ep1"]
    assert f["unmatched_boxes"] == 1 and f["unmatched_only_clusters"] == 1
    assert f["unclustered_boxes"] == 4  # track 3 is in no character
    assert f["wcp"] == 1.0 and f["predicted_characters"] == 2


def test_frame_lookup_and_iou_threshold():
    truth = {"fps": 10, "n_frames": 300}
    assert truth_frame(truth, 0.7) == 7 and truth_frame(truth, 0.69) == 6
    assert truth_frame({"fps": 30, "n_frames": 90}, round(1 / 30, 4)) == 1  # stored as 0.0333
    assert truth_frame(truth, 35.0) == 299 and truth_frame(truth, -1.0) == 0
    visible = [{"identity": "a", "face_box": [0, 0, 10, 10]}, {"identity": "b", "face_box": [5, 0, 15, 10]}]
    assert match_box([6, 0, 16, 10], visible) == "b"
    assert match_box([8, 0, 18, 10], visible) == "b"  # IoU with b = 7/13
    assert match_box([12, 0, 22, 10], visible) is None  # IoU with b = 3/17 < 0.3


def test_box_scale_maps_the_published_frame_size_to_the_ground_truth():
    truth = {"width": 640, "height": 360}
    assert box_scale({}, truth) == (1.0, 1.0)  # a hand-written tracks.json: ground-truth pixels
    sx, sy = box_scale({"coordinates": "source pixels", "frame_size": [1920, 1080]}, truth)
    assert sx == pytest.approx(640 / 1920) and sy == pytest.approx(360 / 1080)


def test_ground_truth_faces_and_turns_score_perfectly_on_a_real_episode(dirs):
    """The annotated faces of montage_dev00, sampled at 1 fps, as if castline had found them exactly."""
    ws, _ = dirs
    truth_dir = REPO / "data" / "ground_truth" / "montage"
    gt = read_json(truth_dir / "montage_dev00.json")
    ids = sorted(gt["identities"])
    tracks = []
    for k, ident in enumerate(ids):
        boxes = tuple(Box(f, f / 10, *v["face_box"], 1.0) for f in range(0, gt["n_frames"], 10)
                      for v in gt["frames"][f]["visible"] if v["identity"] == ident)
        tracks.append(Track(k, boxes))
    turns = [SpeechTurn(t["start"], t["end"], f"speaker_{ids.index(t['identity'])}") for t in gt["turns"]]
    speech = [SpeechTurn(t.start, t.end, f"character_{t.speaker[-1]}") for t in turns]
    d = ws / "videos" / "montage_dev00.mp4"
    write_tracks(d / "tracks.json", tracks)
    write_characters(d / "characters.json", [Character(f"character_{k}", (k,)) for k in range(len(ids))])
    write_rttm(d / "speakers.rttm", "montage_dev00", turns)
    write_rttm(d / "speech.rttm", "montage_dev00", speech)
    r = evaluate_workspace(ws, truth_dir, write=False)
    assert r["videos"] == ["montage_dev00"]
    assert r["faces"]["pooled"]["wcp"] == 1.0 and r["faces"]["pooled"]["unmatched_boxes"] == 0
    assert r["diarization"]["files"]["montage_dev00"]["der"] == pytest.approx(0.0, abs=1e-9)
    assert r["alignment"]["pooled"]["right"] == pytest.approx(1.0)


def test_eval_diarization_shifts_put_silence_before_the_file(tmp_path):
    """scripts/eval_diarization.py --shifts: the same audio after exactly that much silence; shift 0 is the file."""
    import argparse
    import importlib.util

    import numpy as np
    import soundfile as sf

    spec = importlib.util.spec_from_file_location(
        "eval_diarization", Path(__file__).resolve().parents[1] / "scripts" / "eval_diarization.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    audio = (np.arange(1600) % 200 - 100).astype(np.int16)
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, 16000, subtype="PCM_16")
    assert script.shifted(wav, 0.0, tmp_path) == wav
    moved, rate = sf.read(script.shifted(wav, 0.25, tmp_path), dtype="int16")
    assert rate == 16000 and not moved[:4000].any() and (moved[4000:] == audio).all()
    assert script._seconds("0,0.2,1.5") == [0.0, 0.2, 1.5]
    assert script._seconds("0:2.2:0.2") == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2]
    assert script._seconds("0.5:0.5:1") == [0.5]
    for bad in ("0,-1", "-1:1:0.5", "0:1:0", "0:1", "0:a:1", "1:0:0.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            script._seconds(bad)
