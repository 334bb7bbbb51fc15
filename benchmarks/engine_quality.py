"""What the embedded engine finds and what it does to faces, on real photos: `make bench`.

Run `python -m benchmarks.engine_quality`. Photos come from installed packages
(`benchmarks.face_photos`): three real portraits and their mirror images, variants with known face
boxes (faces 40-400 px, turned 15-45 degrees, dark, grey, JPEG quality 30, groups of 2-6,
12 MP and 7 MP frames with small faces) and photos with no face. The JSON has, per variant,
recall and false faces; per found face at fidelity 0.1, the change of detail on the skin and on
the eyes and lips (mean |luma - blurred luma| in those regions, blurred by 1/60 of the face
width); the mean change off the faces; the engine's milliseconds per megapixel; and the time
for 2 MP and 12 MP photos on one core. Contact sheets (input, result, masks) are written to
`benchmarks/results/engine_quality/` to be looked at.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.face_photos import Photo, matches, no_face_photos, source, variants
from benchmarks.report import engine_machine, publish
from core.engine import Face, RGBImage, retouch_image
from core.engine.filters import blur, luma
from core.engine.frame import Frame
from core.engine.masks import Masks, face_masks
from core.errors import NoFaceError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "engine_quality.json"
SHEETS = ROOT / "benchmarks" / "results" / "engine_quality"
FIDELITY = 0.1
LADDER = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def work_view(rgb: RGBImage, frame: Frame) -> np.ndarray:
    crop = rgb[frame.y0 : frame.y1, frame.x0 : frame.x1].astype(np.float32) / 255
    if frame.scale < 1.0:
        return np.asarray(
            cv2.resize(crop, (frame.width, frame.height), interpolation=cv2.INTER_AREA)
        )
    return crop


def detail(view: np.ndarray, where: np.ndarray, frame: Frame) -> float:
    y = luma(view)
    return float(np.abs(y - blur(y, frame.face_width / 60))[where].mean())


def face_figures(before: RGBImage, after: RGBImage, face: Face) -> dict[str, Any]:
    frame = Frame.around(face, before.shape[1], before.shape[0])
    old, new = work_view(before, frame), work_view(after, frame)
    masks = face_masks(old, frame)
    regions = {
        "skin": masks.skin > 0.5,
        "eyes": masks.eyes > 0.5,
        "lips": masks.lips > 0.5,
    }
    figures: dict[str, Any] = {"box": list(face.box.__dict__.values())}
    for name, where in regions.items():
        if where.sum() < 8:
            figures[f"{name}_detail_change"] = None
            continue
        a, b = detail(old, where, frame), detail(new, where, frame)
        figures[f"{name}_detail_change"] = round(b / a - 1, 3) if a > 0 else None
    figures["skin_share_of_box"] = round(
        float((masks.skin[frame.box_region(face)] > 0.5).mean()), 3
    )
    return figures


def off_face_change(before: RGBImage, after: RGBImage, faces: tuple[Face, ...]) -> float:
    outside = np.ones(before.shape[:2], bool)
    for face in faces:
        b = face.box
        outside[b.y : b.y + b.h, b.x : b.x + b.w] = False
    if not outside.any():
        return 0.0
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).mean(axis=2)
    return float(diff[outside].mean())


def measure(photo: Photo) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = retouch_image(photo.rgb, FIDELITY)
    except NoFaceError:
        found: tuple[Face, ...] = ()
        after = photo.rgb
    else:
        found, after = result.faces, result.image
    seconds = time.perf_counter() - started
    hits = [t for t in photo.faces if any(matches(f.box, t) for f in found)]
    false = [f for f in found if not any(matches(f.box, t) for t in photo.faces)]
    megapixels = photo.rgb.shape[0] * photo.rgb.shape[1] / 1e6
    return {
        "size": f"{photo.rgb.shape[1]}x{photo.rgb.shape[0]}",
        "faces": len(photo.faces),
        "found": len(hits),
        "false_faces": len(false),
        "ms_per_megapixel": round(seconds * 1000 / megapixels, 1),
        "ms": round(seconds * 1000, 1),
        "off_face_change": round(off_face_change(photo.rgb, after, found), 3),
        "per_face": [face_figures(photo.rgb, after, f) for f in found],
    }


def kind(name: str) -> str:
    """The variant family a photo belongs to, for recall per family."""
    for tag in ("_40px", "_60px", "_100px", "_200px", "_400px", "_rot15", "_rot30", "_rot-30"):
        if name.endswith(tag):
            return tag[1:].replace("rot-30", "rot30")
    for tag in ("rot45", "dark", "grey", "jpeg30", "group", "12MP", "7MP"):
        if tag in name:
            return tag
    return "original"


def summary(report: dict[str, Any]) -> dict[str, Any]:
    families: dict[str, list[int]] = {}
    for name, figures in report["variants"].items():
        counts = families.setdefault(kind(name), [0, 0, 0])
        counts[0] += figures["found"]
        counts[1] += figures["faces"]
        counts[2] += figures["false_faces"]
    recall = {
        family: {"recall": round(found / total, 3), "faces": total, "false_faces": false}
        for family, (found, total, false) in sorted(families.items())
    }
    faces = [f for v in report["variants"].values() for f in v["per_face"]]
    skin = [f["skin_detail_change"] for f in faces if f["skin_detail_change"] is not None]
    features = [
        f[key]
        for f in faces
        for key in ("eyes_detail_change", "lips_detail_change")
        if f[key] is not None
    ]
    off = [v["off_face_change"] for v in report["variants"].values()]
    return {
        "recall": recall,
        "no_face_false_faces": sum(v["false_faces"] for v in report["no_face"].values()),
        "skin_detail_change_worst": max(skin),
        "skin_detail_change_median": round(statistics.median(skin), 3),
        "feature_detail_change_worst": min(features),
        "off_face_change_worst": max(off),
        "off_face_change_mean": round(statistics.mean(off), 3),
    }


def one_core_times(runs: int) -> dict[str, Any]:
    """The engine on a 2 MP and a 12 MP photo with one face, pinned to one core."""
    cpus = sorted(os.sched_getaffinity(0))
    threads = cv2.getNumThreads()
    astronaut = source("astronaut").rgb
    times: dict[str, Any] = {}
    try:
        os.sched_setaffinity(0, {cpus[0]})
        cv2.setNumThreads(1)
        for label, size in (("2MP", (1632, 1224)), ("12MP", (4000, 3000))):
            rgb = np.asarray(cv2.resize(astronaut, size, interpolation=cv2.INTER_CUBIC), np.uint8)
            retouch_image(rgb, FIDELITY)
            spent = []
            for _ in range(runs):
                started = time.perf_counter()
                retouch_image(rgb, FIDELITY)
                spent.append(time.perf_counter() - started)
            times[label] = {"median_ms": round(statistics.median(spent) * 1000, 1), "runs": runs}
    finally:
        os.sched_setaffinity(0, cpus)
        cv2.setNumThreads(threads)
    return times


def ladder() -> dict[str, list[float]]:
    """Mean change inside the face box at each fidelity: it must fall as fidelity rises."""
    out: dict[str, list[float]] = {}
    for name in ("astronaut", "grace_hopper", "cameraman"):
        photo = source(name)
        box = photo.faces[0]
        inside = np.s_[box.y : box.y + box.h, box.x : box.x + box.w]
        changes = []
        for fidelity in LADDER:
            after = retouch_image(photo.rgb, fidelity).image
            diff = np.abs(after[inside].astype(np.int16) - photo.rgb[inside].astype(np.int16))
            changes.append(round(float(diff.mean()), 3))
        out[name] = changes
    return out


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    s = report["summary"]
    recall = s["recall"]
    strict = [
        f
        for f in (
            "original",
            "60px",
            "100px",
            "200px",
            "400px",
            "rot15",
            "rot30",
            "dark",
            "grey",
            "jpeg30",
            "group",
            "12MP",
            "7MP",
        )
        if f in recall
    ]
    strict_recall = min(recall[f]["recall"] for f in strict)
    loose_recall = min(recall[f]["recall"] for f in ("40px", "rot45"))
    times = report["one_core"]
    ladder_ok = all(all(a > b for a, b in itertools.pairwise(c)) for c in report["ladder"].values())
    checks = {
        "engine_recall_60px_30deg_at_least_95pct": (strict_recall, strict_recall >= 0.95),
        "engine_recall_40px_45deg_at_least_80pct": (loose_recall, loose_recall >= 0.8),
        "engine_no_false_face": (s["no_face_false_faces"], s["no_face_false_faces"] == 0),
        "engine_skin_detail_minus_30pct": (
            s["skin_detail_change_worst"],
            s["skin_detail_change_worst"] <= -0.3,
        ),
        "engine_eye_lip_detail_within_10pct": (
            s["feature_detail_change_worst"],
            s["feature_detail_change_worst"] >= -0.1,
        ),
        "engine_off_face_change_under_1": (
            s["off_face_change_worst"],
            s["off_face_change_worst"] < 1.0,
        ),
        "engine_2MP_under_350ms_one_core": (
            times["2MP"]["median_ms"],
            times["2MP"]["median_ms"] < 350,
        ),
        "engine_12MP_under_900ms_one_core": (
            times["12MP"]["median_ms"],
            times["12MP"]["median_ms"] < 900,
        ),
        "engine_monotonic_in_fidelity": (ladder_ok, ladder_ok),
    }
    return {name: {"value": value, "met": met} for name, (value, met) in checks.items()}


# --- contact sheets ---------------------------------------------------------------------------


def mask_picture(rgb: RGBImage, face: Face) -> RGBImage:
    """The masks in the photo's pixels: skin red, eyes green, lips blue, under-eyes and teeth
    in the blue and green of their own."""
    frame = Frame.around(face, rgb.shape[1], rgb.shape[0])
    masks: Masks = face_masks(work_view(rgb, frame), frame)
    picture = np.dstack([masks.skin, masks.eyes + 0.5 * masks.under_eyes, masks.lips + masks.teeth])
    picture = np.clip(picture * 255, 0, 255).astype(np.uint8)
    size = (frame.x1 - frame.x0, frame.y1 - frame.y0)
    canvas = np.zeros_like(rgb)
    canvas[frame.y0 : frame.y1, frame.x0 : frame.x1] = cv2.resize(picture, size)
    return canvas


def sheet_row(photo: Photo, height: int) -> Image.Image:
    """Input (with the found boxes), result and masks of a photo's faces, side by side."""
    try:
        result = retouch_image(photo.rgb, FIDELITY)
        after, faces = result.image, result.faces
    except NoFaceError:
        after, faces = photo.rgb, ()
    masks = np.zeros_like(photo.rgb)
    for face in faces:
        masks = np.maximum(masks, mask_picture(photo.rgb, face))
    if len(photo.faces) == 1 and faces:
        b = faces[0].box
        pad = b.w // 3
        window = (max(0, b.x - pad), max(0, b.y - pad), b.x + b.w + pad, b.y + b.h + pad)
    else:
        window = (0, 0, photo.rgb.shape[1], photo.rgb.shape[0])
    panels = []
    for pixels in (photo.rgb, after, masks):
        panel = Image.fromarray(pixels).crop(window)
        scale = height / panel.height
        panels.append(panel.resize((round(panel.width * scale), height), Image.Resampling.LANCZOS))
    draw = ImageDraw.Draw(panels[0])
    scale = height / (window[3] - window[1])
    for face in faces:
        b = face.box
        x0, y0 = (b.x - window[0]) * scale, (b.y - window[1]) * scale
        draw.rectangle((x0, y0, x0 + b.w * scale, y0 + b.h * scale), outline=(255, 255, 0))
    row = Image.new("RGB", (sum(p.width for p in panels), height + 22), "white")
    x = 0
    for panel in panels:
        row.paste(panel, (x, 22))
        x += panel.width
    label = f"{photo.name}: {len(faces)} found of {len(photo.faces)}, fidelity {FIDELITY:g}"
    ImageDraw.Draw(row).text((6, 4), label, fill="black")
    return row


def write_sheet(path: Path, photos: list[Photo], height: int = 360) -> None:
    rows = [sheet_row(photo, height) for photo in photos]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    sheet.save(path, optimize=True)


def fidelity_sheet(path: Path, photo: Photo, height: int = 300) -> None:
    """The face at each fidelity of the ladder, from strongest to unchanged."""
    b = photo.faces[0]
    pad = b.w // 4
    window = (max(0, b.x - pad), max(0, b.y - pad), b.x + b.w + pad, b.y + b.h + pad)
    panels = []
    for fidelity in LADDER:
        panel = Image.fromarray(retouch_image(photo.rgb, fidelity).image).crop(window)
        scale = height / panel.height
        panel = panel.resize((round(panel.width * scale), height), Image.Resampling.LANCZOS)
        ImageDraw.Draw(panel).text((6, 4), f"fidelity {fidelity:g}", fill=(255, 255, 0))
        panels.append(panel)
    sheet = Image.new("RGB", (sum(p.width for p in panels), height), "white")
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width
    sheet.save(path, optimize=True)


def contact_sheets(photos: dict[str, Photo]) -> list[str]:
    SHEETS.mkdir(parents=True, exist_ok=True)
    groups = {
        "portraits.png": ["astronaut", "grace_hopper", "cameraman"],
        "hard.png": ["grace_hopper_dark", "astronaut_grey", "cameraman_jpeg30", "astronaut_rot45"],
        "small.png": ["astronaut_40px", "grace_hopper_60px", "cameraman_rot30"],
        "group.png": ["group_6", "group_3"],
        "no_face.png": ["chelsea", "rocket"],
    }
    written = []
    for name, members in groups.items():
        write_sheet(SHEETS / name, [photos[m] for m in members])
        written.append(str((SHEETS / name).relative_to(ROOT)))
    for portrait in ("grace_hopper", "astronaut"):
        path = SHEETS / f"fidelity_{portrait}.png"
        fidelity_sheet(path, photos[portrait])
        written.append(str(path.relative_to(ROOT)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per one-core photo")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    photos = variants()
    empty = no_face_photos()
    report: dict[str, Any] = {
        "benchmark": "engine_quality",
        "machine": engine_machine(),
        "fidelity": FIDELITY,
        "variants": {photo.name: measure(photo) for photo in photos},
        "no_face": {photo.name: measure(photo) for photo in empty},
    }
    report["summary"] = summary(report)
    report["ladder"] = ladder()
    report["one_core"] = one_core_times(args.runs)
    report["targets"] = verdicts(report)
    report["ladder_fidelities"] = list(LADDER)
    report["contact_sheets"] = contact_sheets({p.name: p for p in photos + empty})
    publish(report, args.out)


if __name__ == "__main__":
    main()
