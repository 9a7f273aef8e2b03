"""In: a finished workspace (videos/<video>/{tracks,characters}.json, {speakers,speech}.rttm) + TRUTH/<stem>.{json,rttm}.
Out: face-clustering, diarization and speaker→face alignment scores: a dict, text tables, WORKSPACE/library/eval.json.
Backends: scikit-learn (NMI), pyannote.metrics + pyannote.core (DER, JER); the rest is plain Python, no models.
Over 400 lines on purpose: the three scores share the ground-truth loading and the per-video matching, and
splitting them would spread one evaluation protocol over three files."""
from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from tasks.core.formats import (
    read_characters, read_json, read_rttm, read_tracks, sanitize_label, write_json,
)
from tasks.core.records import OFFSCREEN_PREFIX, Character, SpeechTurn, Track, iou

MIN_IOU = 0.3
COLLAR = 0.25
UNMATCHED = None  # identity of a predicted box that overlaps no ground-truth face


# --- face clustering -----------------------------------------------------------------------------

def truth_frame(truth: dict, t: float) -> int:
    """The ground-truth frame shown at time t (frame f covers [f/fps, (f+1)/fps)).

    Times are stored rounded to 0.1 ms (tasks.core.formats.to_jsonable), so a frame's start time can read
    a little early (1/30 s is stored as 0.0333 = frame 0.999); the 0.01-frame slack puts it back."""
    f = int(math.floor(t * truth["fps"] + 0.01))
    return min(max(f, 0), truth["n_frames"] - 1)


def match_box(box: Sequence[float], visible: Iterable[dict], min_iou: float = MIN_IOU) -> str | None:
    """Identity of the ground-truth face that overlaps `box` best, if that overlap reaches min_iou."""
    best, best_iou = UNMATCHED, min_iou
    for v in visible:
        o = iou(box, v["face_box"])
        if o >= best_iou:
            best, best_iou = v["identity"], o
    return best


def label_boxes(tracks: Sequence[Track], characters: Sequence[Character], truth: dict,
                scale: tuple[float, float] = (1.0, 1.0)) -> tuple[list[tuple[str, str | None]], int]:
    """(character_id, identity or None) for every box of every clustered track, and the count of
    boxes whose track belongs to no character (dropped by castline, so not scorable as a cluster).

    `scale` maps the boxes' pixels to ground-truth pixels (box_scale)."""
    char_of = {tid: c.character_id for c in characters for tid in c.track_ids}
    frames = truth["frames"]
    sx, sy = scale
    out: list[tuple[str, str | None]] = []
    unclustered = 0
    for track in tracks:
        if track.label != "face":
            continue  # ground truth marks faces; head and person boxes are not scored as clusters
        cid = char_of.get(track.track_id)
        if cid is None:
            unclustered += len(track.boxes)
            continue
        for b in track.boxes:
            box = (b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy)
            out.append((cid, match_box(box, frames[truth_frame(truth, b.t)]["visible"])))
    return out, unclustered


def _weighted_majority_share(groups: dict[Any, Counter]) -> float | None:
    """Σ over groups of the majority count / Σ of all counts (purity when groups are clusters,
    inverse purity / coverage when groups are true identities)."""
    total = sum(sum(c.values()) for c in groups.values())
    if not total:
        return None
    return sum(max(c.values()) for c in groups.values()) / total


def cluster_scores(pairs: Sequence[tuple[str, str | None]], true_identities: Iterable[str] = ()) -> dict:
    """Clustering quality of (predicted cluster, true identity) box labels; unmatched boxes are
    counted, never scored (they may be false detections or faces the annotation lacks)."""
    from sklearn.metrics import normalized_mutual_info_score

    matched = [(c, i) for c, i in pairs if i is not UNMATCHED]
    by_cluster: dict[str, Counter] = defaultdict(Counter)
    by_identity: dict[str, Counter] = defaultdict(Counter)
    for c, i in matched:
        by_cluster[c][i] += 1
        by_identity[i][c] += 1
    all_clusters = {c for c, _ in pairs}
    true_ids = set(true_identities) or set(by_identity)
    return {
        "boxes": len(pairs),
        "matched_boxes": len(matched),
        "unmatched_boxes": len(pairs) - len(matched),
        "wcp": _weighted_majority_share(by_cluster),
        # Inverse purity: how much of each identity sits in its main cluster, so over-splitting shows.
        "inverse_purity": _weighted_majority_share(by_identity),
        "nmi": (float(normalized_mutual_info_score([i for _, i in matched], [c for c, _ in matched]))
                if matched else None),
        "predicted_characters": len(by_cluster),
        "unmatched_only_clusters": len(all_clusters - set(by_cluster)),
        "true_characters": len(true_ids),
        "detected_identities": len(by_identity),
        "clusters_per_identity": {i: len(c) for i, c in sorted(by_identity.items())},
    }


def character_identities(pairs: Sequence[tuple[str, str | None]]) -> dict[str, dict]:
    """Per predicted character: its majority ground-truth identity (None when no box matched),
    how many matched boxes back it and its purity."""
    counts: dict[str, Counter] = defaultdict(Counter)
    unmatched: Counter = Counter()
    for c, i in pairs:
        if i is UNMATCHED:
            unmatched[c] += 1
        else:
            counts[c][i] += 1
    out = {}
    for c in sorted({c for c, _ in pairs}):
        cnt = counts.get(c, Counter())
        n = sum(cnt.values())
        top = cnt.most_common(1)[0] if cnt else (None, 0)
        out[c] = {"identity": top[0], "matched_boxes": n, "unmatched_boxes": unmatched[c],
                  "purity": top[1] / n if n else None}
    return out


# --- diarization ---------------------------------------------------------------------------------

def to_annotation(uri: str, turns: Iterable[SpeechTurn], offset: float = 0.0, end: float | None = None):
    """pyannote Annotation of `turns`, shifted by `offset`; turns are clipped at `end` so a file's
    speech never spills into the next file on a concatenated timeline."""
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for k, t in enumerate(turns):
        stop = t.end if end is None else min(t.end, end)
        if stop > t.start:
            ann[Segment(t.start + offset, stop + offset), k] = t.speaker
    return ann


def _uem(start: float, end: float):
    from pyannote.core import Segment, Timeline

    return Timeline([Segment(start, end)])


def overlapped_seconds(turns: Sequence[SpeechTurn]) -> float:
    """Reference speech time spoken over someone else: at each moment, every speaker beyond the first."""
    edges = sorted({x for t in turns for x in (t.start, t.end)})
    return sum(max(0, len(_active(turns, (a + b) / 2)) - 1) * (b - a) for a, b in zip(edges, edges[1:]))


def overlap_share(turns: Sequence[SpeechTurn]) -> float:
    """Share of the reference speech time spoken over someone else: a diarizer that gives one speaker
    at a time misses at least this much (its DER floor; 1 - this is its attribution ceiling)."""
    total = sum(t.duration for t in turns)
    return overlapped_seconds(turns) / total if total else 0.0


def diarization_scores(refs: dict[str, list[SpeechTurn]], hyps: dict[str, list[SpeechTurn]],
                       durations: dict[str, float]) -> dict:
    """DER/JER per file, pooled over files, and cross-file: all files on one timeline in name order
    with library-wide labels kept, so one voice given two ids in two files is counted as confusion."""
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    der = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)
    jer = JaccardErrorRate(collar=COLLAR)
    files = {}
    ref_all = to_annotation("library", [])
    hyp_all = to_annotation("library", [])
    offset = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyannote warns on every call about approximated/empty inputs
        for uri in sorted(refs):
            d = durations[uri]
            ref, hyp = to_annotation(uri, refs[uri], end=d), to_annotation(uri, hyps.get(uri, []), end=d)
            c = der(ref, hyp, uem=_uem(0.0, d), detailed=True)
            total = c["total"] or 1.0
            files[uri] = {
                "der": c["diarization error rate"], "jer": jer(ref, hyp, uem=_uem(0.0, d)),
                "miss": c["missed detection"] / total, "false_alarm": c["false alarm"] / total,
                "confusion": c["confusion"] / total, "speech_seconds": c["total"],
                "overlap": overlap_share(refs[uri]),
                "predicted_speakers": len(hyp.labels()), "true_speakers": len(ref.labels()),
            }
            ref_all.update(to_annotation("library", refs[uri], offset, d))
            hyp_all.update(to_annotation("library", hyps.get(uri, []), offset, d))
            offset += d
        pooled = {"der": abs(der) if files else None, "jer": abs(jer) if files else None}
        cross = {}
        if files:
            c = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)(
                ref_all, hyp_all, uem=_uem(0.0, offset), detailed=True)
            total = c["total"] or 1.0
            cross = {"der": c["diarization error rate"],
                     "jer": JaccardErrorRate(collar=COLLAR)(ref_all, hyp_all, uem=_uem(0.0, offset)),
                     "miss": c["missed detection"] / total, "false_alarm": c["false alarm"] / total,
                     "confusion": c["confusion"] / total,
                     "predicted_speakers": len(hyp_all.labels()), "true_speakers": len(ref_all.labels())}
    return {"files": files, "pooled": pooled, "cross_file": cross}


# --- speaker → face alignment --------------------------------------------------------------------

def _active(turns: Sequence[SpeechTurn], t: float) -> set[str]:
    return {x.speaker for x in turns if x.start <= t < x.end}


def alignment_scores(truth: dict, speech: Sequence[SpeechTurn], label_identity: dict[str, str | None]) -> dict:
    """Seconds of ground-truth speech whose predicted speech.rttm label is the right face, a wrong
    face, off-screen, or nothing; plus off-screen seconds split by whether the speaker's face was
    visible (off-screen is only acceptable while it is not), and the wrong-face seconds in which the face
    named belongs to another person speaking at that moment (overlapped speech heard as one voice).

    `label_identity`: speech.rttm label → majority identity of that character (None: no matched box).
    When several predicted labels are active at once, the best verdict wins (right > wrong >
    off-screen > missed): castline named the right face, even if it also named another."""
    fps, frames = truth["fps"], truth["frames"]
    truth_turns = [SpeechTurn(t["start"], t["end"], t["identity"]) for t in truth["turns"]]
    secs = Counter()
    for turn in truth["turns"]:
        # Break the turn where any predicted turn, ground-truth turn or ground-truth frame starts or ends:
        # inside each piece the active labels, speakers and visible faces are constant, so the sums are exact.
        cuts = {turn["start"], turn["end"]}
        cuts.update(x for s in (*speech, *truth_turns) for x in (s.start, s.end) if turn["start"] < x < turn["end"])
        cuts.update(f / fps for f in range(math.ceil(turn["start"] * fps), math.floor(turn["end"] * fps) + 1)
                    if turn["start"] < f / fps < turn["end"])
        edges = sorted(cuts)
        for a, b in zip(edges, edges[1:]):
            mid, dur = (a + b) / 2, b - a
            labels = _active(speech, mid)
            chars = [lab for lab in labels if not lab.startswith(OFFSCREEN_PREFIX)]
            secs["speech"] += dur
            if any(label_identity.get(lab) == turn["identity"] for lab in chars):
                secs["right"] += dur
            elif chars:
                secs["wrong"] += dur
                # The face named is someone who speaks at this moment too: a voice missed under another, which
                # only overlap detection can recover, not a voice given the wrong face.
                speaking = _active(truth_turns, mid)
                if any(label_identity.get(lab) in speaking for lab in chars):
                    secs["wrong_co_speaker"] += dur
            elif labels:
                secs["offscreen"] += dur
                visible = {v["identity"] for v in frames[truth_frame(truth, mid)]["visible"]}
                secs["offscreen_visible" if turn["identity"] in visible else "offscreen_not_visible"] += dur
            else:
                secs["missed"] += dur
    secs["overlapped"] = overlapped_seconds(truth_turns)
    return alignment_summary(secs)


def alignment_summary(secs: Counter) -> dict:
    total = secs["speech"]
    out = {"speech_seconds": total}
    for k in ("right", "wrong", "offscreen", "missed"):
        out[k] = secs[k] / total if total else None
    # One label at a time can be right for only one of several people speaking at once.
    out["single_label_ceiling"] = 1 - secs["overlapped"] / total if total else None
    out["wrong_co_speaker"] = secs["wrong_co_speaker"] / total if total else None
    out["offscreen_visible_seconds"] = secs["offscreen_visible"]
    out["offscreen_not_visible_seconds"] = secs["offscreen_not_visible"]
    out["seconds"] = {k: secs[k] for k in ("right", "wrong", "wrong_co_speaker", "offscreen", "missed",
                                           "overlapped", "offscreen_visible", "offscreen_not_visible")}
    return out


def speech_label_identities(characters: Iterable[Character], identity_of: dict[str, dict]) -> dict[str, str | None]:
    """speech.rttm label → identity. A label is the sanitized character label (gallery name or id);
    when one name covers several characters, their boxes are pooled to pick the identity."""
    members: dict[str, set[str]] = defaultdict(set)
    for c in characters:
        members[sanitize_label(c.label)].add(c.character_id)
        members[sanitize_label(c.character_id)].add(c.character_id)
    out = {}
    for label, cids in members.items():
        votes = Counter()
        for cid in cids:
            info = identity_of.get(cid)
            if info and info["identity"] is not None:
                votes[info["identity"]] += info["matched_boxes"] * (info["purity"] or 0)
        out[label] = votes.most_common(1)[0][0] if votes else None
    return out


# --- workspace -----------------------------------------------------------------------------------

def box_scale(tracks_meta: dict, truth: dict) -> tuple[float, float]:
    """Published box pixels → ground-truth pixels. tracks.json's boxes are in source-video pixels of its
    `frame_size`; the ground truth may be annotated on another size. Without a frame size (a
    hand-written tracks.json) the boxes are taken to be in ground-truth pixels."""
    if "frame_size" not in tracks_meta:
        return 1.0, 1.0
    width, height = tracks_meta["frame_size"]
    return truth["width"] / width, truth["height"] / height


def _turns(path: Path) -> list[SpeechTurn]:
    return [t for turns in read_rttm(path).values() for t in turns] if path.exists() else []


def evaluate_workspace(workspace: Path, truth_dir: Path, write: bool = True) -> dict:
    """Score every video of `workspace` that has `truth_dir/<stem>.json`; others are ignored.
    Writes the result to WORKSPACE/library/eval.json unless write=False."""
    workspace, truth_dir = Path(workspace), Path(truth_dir)
    videos = {}
    for d in sorted((workspace / "videos").iterdir()) if (workspace / "videos").is_dir() else []:
        stem = Path(d.name).stem
        if d.is_dir() and (truth_dir / f"{stem}.json").exists():
            videos[stem] = d
    notes: list[str] = []
    truths, pairs, chars, speech, hyps, refs = {}, {}, {}, {}, {}, {}
    unclustered = {}
    for stem, d in sorted(videos.items()):
        truth = truths[stem] = read_json(truth_dir / f"{stem}.json")
        tracks = read_tracks(d / "tracks.json") if (d / "tracks.json").exists() else []
        tracks_meta = read_json(d / "tracks.json") if tracks else {}
        chars[stem] = read_characters(d / "characters.json") if (d / "characters.json").exists() else []
        for name in ("tracks.json", "characters.json", "speakers.rttm", "speech.rttm"):
            if not (d / name).exists():
                notes.append(f"{stem}: {name} missing (scored as empty)")
        pairs[stem], unclustered[stem] = label_boxes(tracks, chars[stem], truth, box_scale(tracks_meta, truth))
        hyps[stem] = _turns(d / "speakers.rttm")
        speech[stem] = _turns(d / "speech.rttm")
        rttm = truth_dir / f"{stem}.rttm"
        refs[stem] = (_turns(rttm) if rttm.exists() else
                      [SpeechTurn(t["start"], t["end"], t["identity"]) for t in truth["turns"]])

    faces = {"episodes": {}, "pooled": {}}
    for stem in truths:
        visible = {v["identity"] for f in truths[stem]["frames"] for v in f["visible"]}
        faces["episodes"][stem] = {**cluster_scores(pairs[stem], visible), "unclustered_boxes": unclustered[stem]}
    all_pairs = [p for stem in truths for p in pairs[stem]]
    all_visible = {v["identity"] for t in truths.values() for f in t["frames"] for v in f["visible"]}
    faces["pooled"] = {**cluster_scores(all_pairs, all_visible), "unclustered_boxes": sum(unclustered.values())}
    identity_of = character_identities(all_pairs)
    names = {c.character_id: c.name for cs in chars.values() for c in cs}
    faces["characters"] = {cid: {"name": names.get(cid), **info} for cid, info in identity_of.items()}

    diar = diarization_scores(refs, hyps, {s: float(t["duration"]) for s, t in truths.items()})

    label_identity = speech_label_identities([c for cs in chars.values() for c in cs], identity_of)
    align = {"episodes": {}}
    total = Counter()
    for stem, truth in truths.items():
        a = alignment_scores(truth, speech[stem], label_identity)
        align["episodes"][stem] = a
        total["speech"] += a["speech_seconds"]
        total.update(a["seconds"])
    align["pooled"] = alignment_summary(total)

    results = {"workspace": str(workspace), "truth_dir": str(truth_dir), "videos": sorted(truths),
               "faces": faces, "diarization": diar, "alignment": align, "notes": notes}
    if write:
        write_json(workspace / "library" / "eval.json", results)
    return results


# --- report --------------------------------------------------------------------------------------

def _f(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.1%}" if pct else f"{x:.3f}"
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]

    def fmt(r: Sequence[str]) -> str:  # first column left-aligned (names), numbers right-aligned
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))

    return [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]


def format_report(results: dict) -> str:
    out: list[str] = []
    faces = results["faces"]
    out.append("Face clustering (boxes matched to ground-truth faces at IoU >= 0.3; unmatched not scored)")
    rows = []
    for name, s in [*faces["episodes"].items(), ("POOLED (library ids)", faces["pooled"])]:
        rows.append([name, s["boxes"], s["matched_boxes"], s["unmatched_boxes"], s["unclustered_boxes"],
                     _f(s["wcp"]), _f(s["inverse_purity"]), _f(s["nmi"]),
                     f"{s['predicted_characters']}/{s['true_characters']}", s["unmatched_only_clusters"]])
    out += _table(["episode", "boxes", "matched", "unmatched", "unclustered", "WCP", "inv.pur", "NMI",
                   "chars pred/true", "unmatched-only"], rows)
    out.append("")
    out.append("Characters -> majority ground-truth identity (over all episodes)")
    out += _table(["character", "name", "identity", "matched", "unmatched", "purity"],
                  [[cid, c["name"] or "-", c["identity"] or "-", c["matched_boxes"], c["unmatched_boxes"],
                    _f(c["purity"])] for cid, c in faces["characters"].items()])
    out.append("")
    diar = results["diarization"]
    out.append(f"Diarization (speakers.rttm vs ground truth; collar {COLLAR} s, overlap scored)")
    rows = [[uri, _f(s["der"], True), _f(s["jer"], True), _f(s["miss"], True), _f(s["false_alarm"], True),
             _f(s["confusion"], True), f"{s['predicted_speakers']}/{s['true_speakers']}", _f(s["overlap"], True)]
            for uri, s in diar["files"].items()]
    rows.append(["POOLED (per file)", _f(diar["pooled"]["der"], True), _f(diar["pooled"]["jer"], True),
                 "", "", "", "", ""])
    c = diar["cross_file"]
    if c:
        rows.append(["CROSS-FILE", _f(c["der"], True), _f(c["jer"], True), _f(c["miss"], True),
                     _f(c["false_alarm"], True), _f(c["confusion"], True),
                     f"{c['predicted_speakers']}/{c['true_speakers']}", ""])
    out += _table(["file", "DER", "JER", "miss", "FA", "conf", "spk pred/true", "overlap"], rows)
    out.append("overlap: reference speech spoken over someone else, the least DER (as miss) of a diarizer "
               "that gives one speaker at a time (castline's turns may overlap)")
    out.append("")
    out.append("Speaker -> face alignment (share of ground-truth speech time)")
    al = results["alignment"]
    rows = [[name, f"{s['speech_seconds']:.1f}", _f(s["right"], True), _f(s["wrong"], True),
             _f(s["wrong_co_speaker"], True), _f(s["offscreen"], True), _f(s["missed"], True),
             f"{s['offscreen_visible_seconds']:.1f}", f"{s['offscreen_not_visible_seconds']:.1f}",
             _f(s["single_label_ceiling"], True)]
            for name, s in [*al["episodes"].items(), ("POOLED", al["pooled"])]]
    out += _table(["episode", "speech s", "right", "wrong face", "co-speaker", "off-screen", "missed",
                   "offscr+visible s", "offscr+hidden s", "1-label max"], rows)
    out.append("co-speaker: of the wrong-face time, the part where the face named belongs to someone speaking "
               "at that moment too (a voice heard under another's: overlap detection, not linking, lost it)")
    out.append("1-label max: the most any output with one label at a time can get right (overlapped speech)")
    for n in results.get("notes", []):
        out.append(f"note: {n}")
    return "\n".join(out) + "\n"
