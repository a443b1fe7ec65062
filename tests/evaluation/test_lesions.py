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
from evaluation.lesions.fill import detect_blemishes, fill_discs
from evaluation.lesions.marks import KINDS, load_marks
from evaluation.lesions.measure import (
    Lesion,
    disc_means,
    lesion_contrast,
    protected_changed,
    ring_means,
    share_removed,
    texture_kept,
    to_lab,
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
