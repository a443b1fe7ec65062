"""The real-blemish evaluation's measures, baseline and files, on synthetic skin (no research
images needed)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.lesions import __main__ as command
from evaluation.lesions.extract import ExtractError, extract, load_manifest
from evaluation.lesions.fill import FILL_GROW, detect_blemishes, fill_discs
from evaluation.lesions.marks import KINDS, load_marks
from evaluation.lesions.measure import (
    Lesion,
    disc_means,
    discs,
    edges_added_count,
    lesion_contrast,
    protected_changed,
    ring_means,
    share_removed,
    smoothed_gradient,
    texture_kept,
    to_lab,
    wide_contrast,
)

PLANTED = [Lesion(50, 60, 5), Lesion(140, 50, 4), Lesion(90, 140, 6), Lesion(150, 150, 3)]


def clean_skin(size: int = 200, seed: int = 0) -> np.ndarray:
    """A flat skin tone with a fine grain of its own (1-px noise, slightly blurred)."""
    rng = np.random.default_rng(seed)
    grain = cv2.GaussianBlur(rng.normal(0, 6, (size, size)).astype(np.float32), (0, 0), 0.7)
    base = np.array([205, 160, 140], np.float32)
    return np.clip(base + grain[..., None], 0, 255).round().astype(np.uint8)


def with_blemishes(image: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """`image` with each lesion painted as a red-brown disc, soft at its edge."""
    out = image.astype(np.float32)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    for les in lesions:
        weight = np.clip(les.r + 0.5 - np.hypot(xx - les.x, yy - les.y), 0, 1)[..., None]
        out += weight * (np.array([-25, -55, -45], np.float32))
    return np.clip(out, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    clean = clean_skin()
    return clean, with_blemishes(clean, PLANTED)


def removed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return share_removed(
        lesion_contrast(to_lab(before), PLANTED), lesion_contrast(to_lab(after), PLANTED)
    )


def test_planted_discs_stand_out_against_their_ring(photos) -> None:
    _, spotted = photos
    assert np.all(lesion_contrast(to_lab(spotted), PLANTED) > 15)


def test_identity_removes_no_contrast(photos) -> None:
    _, spotted = photos
    assert np.allclose(removed(spotted, spotted.copy()), 0)


def test_a_perfect_fill_removes_nearly_all_contrast(photos) -> None:
    clean, spotted = photos
    assert np.all(removed(spotted, clean) > 0.9)


def test_a_fill_that_makes_lesions_worse_counts_negative(photos) -> None:
    _, spotted = photos
    worse = with_blemishes(spotted, PLANTED)
    assert np.all(removed(spotted, worse) < 0)


def test_texture_is_kept_by_identity_and_lost_by_a_blur(photos) -> None:
    _, spotted = photos
    skin = np.full(spotted.shape[:2], 255, np.uint8)
    assert texture_kept(spotted, spotted.copy(), skin, PLANTED) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(spotted, (0, 0), 2.0)
    assert texture_kept(spotted, blurred, skin, PLANTED) < 0.3


def test_detect_and_fill_finds_every_planted_disc_and_little_else(photos) -> None:
    _, spotted = photos
    skin = np.full(spotted.shape[:2], 255, np.uint8)
    found = detect_blemishes(spotted, skin)
    for les in PLANTED:
        assert any(np.hypot(f.x - les.x, f.y - les.y) <= les.r for f in found), les
    assert len(found) <= 2 * len(PLANTED)


def test_detection_stays_inside_the_skin_mask(photos) -> None:
    _, spotted = photos
    skin = np.zeros(spotted.shape[:2], np.uint8)
    skin[:, :100] = 255
    found = detect_blemishes(spotted, skin)
    assert found and all(f.x < 100 for f in found)


def test_the_oracle_fill_removes_the_planted_discs_and_keeps_texture(photos) -> None:
    _, spotted = photos
    filled = fill_discs(spotted, PLANTED)
    assert np.all(removed(spotted, filled) > 0.8)
    skin = np.full(spotted.shape[:2], 255, np.uint8)
    assert texture_kept(spotted, filled, skin, PLANTED) == pytest.approx(1.0, abs=0.02)


def test_protected_pixels_count_changes_outside_skin_only(photos) -> None:
    clean, _ = photos
    skin = np.zeros(clean.shape[:2], np.uint8)
    skin[50:150, 50:150] = 255
    inside = clean.copy()
    inside[60:140, 60:140] += 10
    assert protected_changed(clean, inside, skin)[0] == 0
    outside = clean.copy()
    outside[:10, :10] = 0
    assert protected_changed(clean, outside, skin)[0] == 100


def pale_patch(image: np.ndarray, feather: float = 0.0) -> np.ndarray:
    """`image` with a flat, pale 40x40 square pasted over it (grain gone, about +7 L*), its
    edge hard, or blended in over about 2 `feather` px."""
    weight = np.zeros(image.shape[:2], np.float32)
    weight[80:120, 80:120] = 1
    if feather:
        weight = cv2.GaussianBlur(weight, (0, 0), feather)
    patch = np.array([225, 180, 160], np.float32)
    out = image * (1 - weight[..., None]) + patch * weight[..., None]
    return out.round().astype(np.uint8)


def edges_added(before: np.ndarray, after: np.ndarray, skin: np.ndarray) -> float:
    """The share of skin pixels on an edge the retouch added, as the command reports it."""
    grad = [smoothed_gradient(to_lab(image)) for image in (before, after)]
    added, total = edges_added_count(*grad, skin)
    return added / total


def test_a_hard_edged_pale_patch_adds_edges_along_its_boundary(photos) -> None:
    clean, _ = photos
    skin = np.full(clean.shape[:2], 255, np.uint8)
    # The boundary is 160 px long and counts over a band a few px wide: about 1% of 40000.
    assert edges_added(clean, pale_patch(clean), skin) > 0.005


def test_the_same_patch_blended_in_softly_adds_no_edge(photos) -> None:
    clean, _ = photos
    skin = np.full(clean.shape[:2], 255, np.uint8)
    assert edges_added(clean, pale_patch(clean, feather=6.0), skin) < 1e-4


def test_removing_lesions_adds_no_edge(photos) -> None:
    clean, spotted = photos
    skin = np.full(clean.shape[:2], 255, np.uint8)
    assert edges_added(spotted, clean, skin) < 1e-4
    assert edges_added(spotted, fill_discs(spotted, PLANTED), skin) < 1e-3


def test_identity_adds_no_edge(photos) -> None:
    _, spotted = photos
    skin = np.full(spotted.shape[:2], 255, np.uint8)
    assert edges_added(spotted, spotted.copy(), skin) == 0


def test_edges_added_count_on_skin_only(photos) -> None:
    clean, _ = photos
    skin = np.full(clean.shape[:2], 255, np.uint8)
    skin[60:140, 60:140] = 0
    assert edges_added(clean, pale_patch(clean), skin) == 0


def paint_disc(image: np.ndarray, lesion: Lesion, shift: tuple[float, float, float]) -> np.ndarray:
    """`image` with `shift` (RGB levels) added over the lesion's disc, soft at its edge."""
    out = image.astype(np.float32)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    weight = np.clip(lesion.r + 0.5 - np.hypot(xx - lesion.x, yy - lesion.y), 0, 1)[..., None]
    return np.clip(out + weight * np.array(shift, np.float32), 0, 255).round().astype(np.uint8)


# A small, darker-red lesion in the middle of an inflamed red blotch (about 16 ΔE from the skin,
# the lesion about 9 more). The blotch (radius 4r) lies inside the lesion's r..2r ring and
# covers the inner third of the wide ring 3r..6r (12-24 px).
IN_BLOTCH = Lesion(100, 100, 4)
BLOTCH = Lesion(100, 100, 16)


@pytest.fixture(scope="module")
def blotched() -> dict[str, np.ndarray]:
    clean = clean_skin()
    blotch = paint_disc(clean, BLOTCH, (-8, -35, -25))
    spotted = paint_disc(blotch, IN_BLOTCH, (-20, -25, -20))
    grown = discs(clean.shape, [IN_BLOTCH], FILL_GROW)[..., None]
    return {
        "clean": clean,
        "spotted": spotted,
        # The lesion's disc, grown 1.5x, filled with the blotch (its grain kept); the blotch stays.
        "lesion_filled": np.where(grown, blotch, spotted),
    }


def removed_near_and_wide(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    near = share_removed(
        lesion_contrast(to_lab(before), [IN_BLOTCH]), lesion_contrast(to_lab(after), [IN_BLOTCH])
    )
    wide = share_removed(
        wide_contrast(to_lab(before), [IN_BLOTCH]), wide_contrast(to_lab(after), [IN_BLOTCH])
    )
    return float(near[0]), float(wide[0])


def test_a_lesion_filled_with_its_blotch_removes_the_near_contrast_not_the_wide(
    blotched,
) -> None:
    near, wide = removed_near_and_wide(blotched["spotted"], blotched["lesion_filled"])
    assert near > 0.9
    # The blotch still stands out from the skin in the wide ring: not even halved.
    assert wide < 0.5


def test_removing_blotch_and_lesion_removes_both_contrasts(blotched) -> None:
    near, wide = removed_near_and_wide(blotched["spotted"], blotched["clean"])
    assert near > 0.9
    assert wide > 0.9


def test_identity_removes_no_wide_contrast(blotched) -> None:
    assert removed_near_and_wide(blotched["spotted"], blotched["spotted"].copy()) == (0.0, 0.0)


def test_the_wide_ring_starts_clear_of_the_lesions_halo() -> None:
    # A red halo out to 3r around the lesion belongs to it, not to the skin it is compared with:
    # against the ring 3r..6r the lesion counts in full; against r..2r (all halo) it hardly does.
    clean = clean_skin()
    lesion = Lesion(100, 100, 4)
    haloed = paint_disc(clean, Lesion(100, 100, 12), (-15, -45, -35))
    spotted = paint_disc(haloed, lesion, (-10, -10, -10))
    disc = discs(clean.shape, [lesion])
    against_skin = float(np.linalg.norm(to_lab(spotted)[disc].mean(0) - to_lab(clean).mean((0, 1))))
    assert wide_contrast(to_lab(spotted), [lesion])[0] == pytest.approx(against_skin, abs=1.0)
    assert lesion_contrast(to_lab(spotted), [lesion])[0] < 0.5 * against_skin


def test_the_wide_ring_of_a_tiny_mark_reaches_12_px() -> None:
    # A 1-px mark on a flat red disc of radius 5: its ring 3r..6r (3-6 px) is mostly the disc,
    # the floored ring 3..12 px mostly skin, so the disc counts against the skin.
    clean = clean_skin()
    tiny = Lesion(100, 100, 1)
    red = paint_disc(clean, Lesion(100, 100, 5), (-8, -35, -25))
    red_vs_skin = float(np.linalg.norm(to_lab(red)[100, 100] - to_lab(clean)[100, 100]))
    assert wide_contrast(to_lab(red), [tiny])[0] > 0.75 * red_vs_skin
    assert lesion_contrast(to_lab(red), [tiny], 3, 6)[0] < 0.6 * red_vs_skin


def test_the_wide_ring_leaves_other_lesions_out(blotched) -> None:
    # A second lesion in the wide ring but not in r..2r moves only the wide figure when it is
    # left in; left out, the wide contrast is that of the lesion alone to within the grain.
    neighbour = Lesion(118, 100, 4)
    both = paint_disc(blotched["spotted"], neighbour, (-25, -55, -45))
    alone = wide_contrast(to_lab(blotched["spotted"]), [IN_BLOTCH])[0]
    assert wide_contrast(to_lab(both), [IN_BLOTCH, neighbour])[0] == pytest.approx(alone, abs=0.5)
    assert abs(wide_contrast(to_lab(both), [IN_BLOTCH])[0] - alone) > 0.5


def test_a_hole_in_the_gate_at_a_lesion_is_told_from_the_gate_passing_by() -> None:
    gate = np.zeros((200, 200), np.float32)
    gate[:, :120] = 1
    gate[55:66, 45:56] = 0
    hole, edge = Lesion(50, 60, 5), Lesion(130, 60, 5)
    assert list(disc_means(gate, [hole, edge])) == [0.0, 0.0]
    assert list(ring_means(gate, [hole, edge], 2, 4) > 0.5) == [True, False]


def test_the_committed_manifest_and_marks_parse_and_agree() -> None:
    manifest = load_manifest()
    marks = load_marks()
    assert set(marks) <= {p["name"] for p in manifest["photos"]}
    assert sum(len(v) for v in marks.values()) > 0
    assert all(les.kind in KINDS and les.r > 0 for v in marks.values() for les in v)
    for source in manifest["sources"].values():
        assert source["licence"] and source["repo"]


def _git_repo(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    repo = tmp_path / "src"
    repo.mkdir()
    (repo / "a.jpg").write_bytes(data)
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "a.jpg"], check=True)
    subprocess.run(["git", "-C", str(repo), *env, "commit", "-qm", "a"], check=True)
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return repo, commit


def _manifest(commit: str, sha: str) -> dict:
    return {
        "sources": {"s": {"kind": "git", "repo": "o/n", "commit": commit, "licence": "-"}},
        "photos": [{"name": "a", "source": "s", "path": "a.jpg", "sha256": sha, "file": "a.jpg"}],
    }


def test_extract_writes_the_file_whose_sha256_matches(tmp_path: Path) -> None:
    data = b"not really a jpeg"
    repo, commit = _git_repo(tmp_path, data)
    written = extract(_manifest(commit, hashlib.sha256(data).hexdigest()), [repo], tmp_path / "o")
    assert [p.read_bytes() for p in written] == [data]


def test_extract_refuses_a_wrong_sha256_and_writes_nothing(tmp_path: Path) -> None:
    repo, commit = _git_repo(tmp_path, b"not really a jpeg")
    with pytest.raises(ExtractError, match="sha256"):
        extract(_manifest(commit, "0" * 64), [repo], tmp_path / "o")
    assert not (tmp_path / "o" / "a.jpg").exists()


def test_the_command_without_photos_says_so_and_exits_0(tmp_path: Path, capsys) -> None:
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"photos": {"acne": [[10, 10, 3, "papule"]]}}))
    code = command.main(["--photos", str(tmp_path), "--marks", str(marks)])
    assert code == 0
    assert "no marked photos found" in capsys.readouterr().out
