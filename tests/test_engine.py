"""The embedded engine on real photographs and variants of them with known faces."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from benchmarks import face_photos as photos
from benchmarks.engine_quality import detail, work_view
from benchmarks.face_photos import Photo, matches
from core.engine import Face, FaceBox, detect_faces, retouch_image
from core.engine import runtime as engine_runtime
from core.engine.frame import Frame
from core.engine.masks import face_masks
from core.errors import FidelityError, NoFaceError

SOURCES = ("astronaut", "grace_hopper", "cameraman")


def found_exactly(photo: Photo) -> list[Face]:
    """The faces found, checked one to one against the photo's known faces."""
    faces = detect_faces(photo.rgb)
    for truth in photo.faces:
        assert any(matches(f.box, truth) for f in faces), f"{photo.name}: missed {truth}"
    for face in faces:
        assert any(matches(face.box, t) for t in photo.faces), f"{photo.name}: false {face.box}"
    return faces


def work(rgb: np.ndarray, face: Face) -> tuple[np.ndarray, Frame]:
    frame = Frame.around(face, rgb.shape[1], rgb.shape[0])
    return work_view(rgb, frame), frame


@pytest.fixture(scope="module")
def hopper() -> Photo:
    return photos.source("grace_hopper")


@pytest.fixture(scope="module")
def hopper_results(hopper: Photo) -> dict[float, np.ndarray]:
    return {f: retouch_image(hopper.rgb, f).image for f in (0.1, 0.3, 0.5, 0.9, 1.0)}


# --- finding faces ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
def test_finds_the_face_in_each_real_portrait(name: str) -> None:
    [face] = found_exactly(photos.source(name))
    assert face.landmarks.shape == (468, 2)
    assert 0.5 <= face.score <= 1.0


@pytest.mark.parametrize(
    "photo",
    [
        pytest.param(lambda: photos.scaled(photos.source("astronaut"), 40), id="40px"),
        pytest.param(lambda: photos.scaled(photos.source("cameraman"), 60), id="60px-man"),
        pytest.param(lambda: photos.scaled(photos.source("grace_hopper"), 400), id="400px"),
        pytest.param(lambda: photos.rotated(photos.source("grace_hopper"), 30), id="tilt30"),
        pytest.param(lambda: photos.rotated(photos.source("cameraman"), -45), id="tilt45"),
        pytest.param(lambda: photos.darkened(photos.source("astronaut")), id="dark"),
        pytest.param(lambda: photos.greyed(photos.source("grace_hopper")), id="grey"),
        pytest.param(lambda: photos.compressed(photos.source("cameraman")), id="jpeg30"),
        pytest.param(lambda: photos.mirrored(photos.source("cameraman")), id="mirror"),
        pytest.param(lambda: photos.group(5), id="group5"),
    ],
)
def test_finds_faces_small_tilted_dark_grey_and_in_groups(photo: object) -> None:
    assert callable(photo)
    found_exactly(photo())


def test_finds_a_small_face_in_a_12_megapixel_photo() -> None:
    photo = photos.scaled(photos.source("astronaut"), 100, (4000, 3000))
    assert photo.rgb.shape == (3000, 4000, 3)
    found_exactly(photo)


@pytest.mark.parametrize("photo", photos.no_face_photos(), ids=lambda p: p.name)
def test_no_face_in_photos_without_one(photo: Photo) -> None:
    assert detect_faces(photo.rgb) == []
    with pytest.raises(NoFaceError, match="No face found in the photo"):
        retouch_image(photo.rgb, 0.1)
    with pytest.raises(NoFaceError):
        retouch_image(photo.rgb, 1.0)


def test_faces_come_largest_first() -> None:
    faces = detect_faces(photos.group(4, face_width=90).rgb)
    areas = [f.box.w * f.box.h for f in faces]
    assert len(faces) == 4 and areas == sorted(areas, reverse=True)


# --- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
def test_the_skin_mask_leaves_out_eyes_brows_and_lips(name: str) -> None:
    photo = photos.source(name)
    [face] = detect_faces(photo.rgb)
    view, frame = work(photo.rgb, face)
    masks = face_masks(view, frame)

    def at(index: int) -> float:
        x, y = frame.point(index)
        return float(masks.skin[round(y), round(x)])

    for feature in (159, 145, 386, 374, 105, 334, 13, 14):  # eyelids, brows, lips
        assert at(feature) < 0.1, feature
    assert masks.eyes[masks.eyes > 0.5].size > 0 and masks.lips[masks.lips > 0.5].size > 0
    assert float((masks.skin * masks.lips).max()) < 0.25
    assert float((masks.skin * masks.eyes).max()) < 0.1
    # both cheeks are skin, even on the dark side of a face lit from one side
    for cheek in (50, 280):
        if name != "cameraman" or cheek == 50:  # the man's left cheek is turned away
            assert at(cheek) > 0.8, cheek


def test_the_skin_mask_stays_inside_the_face(hopper: Photo) -> None:
    [face] = detect_faces(hopper.rgb)
    view, frame = work(hopper.rgb, face)
    skin = face_masks(view, frame).skin
    ys, xs = np.nonzero(skin > 0.02)
    points = frame.points
    assert xs.min() >= points[:, 0].min() - 1 and xs.max() <= points[:, 0].max() + 1
    assert ys.min() >= points[:, 1].min() - 1 and ys.max() <= points[:, 1].max() + 1


def test_older_skin_is_mostly_in_the_mask(hopper: Photo) -> None:
    """Wrinkles are skin to smooth, not hair to keep (the old engine masked 18% of this face)."""
    [face] = detect_faces(hopper.rgb)
    view, frame = work(hopper.rgb, face)
    masks = face_masks(view, frame)
    assert float((masks.skin[frame.box_region(face)] > 0.5).mean()) > 0.35


# --- retouching -------------------------------------------------------------------------------


def test_skin_loses_a_third_of_its_detail_and_the_eyes_keep_theirs(
    hopper: Photo, hopper_results: dict[float, np.ndarray]
) -> None:
    [face] = detect_faces(hopper.rgb)
    before, frame = work(hopper.rgb, face)
    after, _ = work(hopper_results[0.1], face)
    masks = face_masks(before, frame)
    skin, eyes, lips = masks.skin > 0.5, masks.eyes > 0.5, masks.lips > 0.5
    assert detail(after, skin, frame) < 0.7 * detail(before, skin, frame)
    for where in (eyes, lips):
        assert detail(after, where, frame) > 0.9 * detail(before, where, frame)


def test_lower_fidelity_changes_the_face_more(
    hopper: Photo, hopper_results: dict[float, np.ndarray]
) -> None:
    box = hopper.faces[0]
    inside = np.s_[box.y : box.y + box.h, box.x : box.x + box.w]

    def change(f: float) -> float:
        diff = hopper_results[f][inside].astype(int) - hopper.rgb[inside].astype(int)
        return float(np.abs(diff).mean())

    assert change(0.1) > change(0.3) > change(0.5) > change(0.9) > 0
    assert np.array_equal(hopper_results[1.0], hopper.rgb)


def test_nothing_changes_off_the_face(
    hopper: Photo, hopper_results: dict[float, np.ndarray]
) -> None:
    [face] = detect_faces(hopper.rgb)
    b = face.box
    outside = np.ones(hopper.rgb.shape[:2], bool)
    outside[b.y : b.y + b.h, b.x : b.x + b.w] = False
    diff = np.abs(hopper_results[0.1].astype(int) - hopper.rgb.astype(int)).max(axis=2)
    assert diff[outside].max() <= 1
    assert diff[outside].mean() < 0.05


def test_every_face_of_a_group_is_retouched() -> None:
    photo = photos.group(3)
    result = retouch_image(photo.rgb, 0.1)
    assert len(result.faces) == 3
    for face in result.faces:
        b = face.box
        part = np.s_[b.y : b.y + b.h, b.x : b.x + b.w]
        assert np.abs(result.image[part].astype(int) - photo.rgb[part].astype(int)).mean() > 1


def test_a_grey_photo_stays_grey() -> None:
    photo = photos.greyed(photos.source("astronaut"))
    result = retouch_image(photo.rgb, 0.1).image.astype(int)
    assert np.abs(result[:, :, 0] - result[:, :, 1]).max() <= 1
    assert np.abs(result[:, :, 1] - result[:, :, 2]).max() <= 1
    b = photo.faces[0]
    face = np.s_[b.y : b.y + b.h, b.x : b.x + b.w]
    assert np.abs(result[face] - photo.rgb[face].astype(int)).mean() > 1


def test_adds_no_colour_cast(hopper: Photo, hopper_results: dict[float, np.ndarray]) -> None:
    box = hopper.faces[0]
    part = np.s_[box.y : box.y + box.h, box.x : box.x + box.w]
    before = hopper.rgb[part].reshape(-1, 3).astype(float).mean(axis=0)
    after = hopper_results[0.1][part].reshape(-1, 3).astype(float).mean(axis=0)
    assert abs((after[0] - after[1]) - (before[0] - before[1])) < 2.5
    assert abs((after[1] - after[2]) - (before[1] - before[2])) < 2.5


@pytest.mark.parametrize("fidelity", [-0.01, 1.01, float("nan"), True])
def test_fidelity_outside_zero_to_one_is_refused(hopper: Photo, fidelity: float) -> None:
    with pytest.raises(FidelityError):
        retouch_image(hopper.rgb, fidelity)


@pytest.mark.parametrize(
    "array",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_only_uint8_rgb_is_accepted(array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        detect_faces(array)


def test_a_tiny_or_blank_photo_has_no_face() -> None:
    assert detect_faces(np.zeros((1, 1, 3), np.uint8)) == []
    assert detect_faces(np.full((64, 4000, 3), 200, np.uint8)) == []


# --- the runtime ------------------------------------------------------------------------------


def test_each_thread_has_its_own_interpreters_and_gets_the_same_faces() -> None:
    photo = photos.group(2)
    seen: list[int] = []

    def detect(_: int) -> list[FaceBox]:
        faces = detect_faces(photo.rgb)
        seen.append(id(engine_runtime._interpreter(engine_runtime.FULL_RANGE)))
        return [f.box for f in faces]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(detect, range(8)))
    assert all(r == results[0] and len(r) == 2 for r in results)
    assert len(set(seen)) > 1  # one interpreter per worker thread, never shared


def test_runs_with_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The models are files in the package: a fresh thread loads them with sockets refused."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    photo = photos.source("astronaut")
    outcome: list[int] = []
    worker = threading.Thread(
        target=lambda: outcome.append(len(retouch_image(photo.rgb, 0.3).faces))
    )
    worker.start()
    worker.join(60)
    assert outcome == [1]
