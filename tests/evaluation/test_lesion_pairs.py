"""The blind lesion pairs: who is drawn, what is shown, how answers are tallied (no research
images needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.lesions import pairs
from evaluation.lesions.measure import Lesion

LESIONS = {
    "a": [Lesion(20, 20, 3), Lesion(60, 40, 5), Lesion(100, 90, 2)],
    "b": [Lesion(30, 70, 4), Lesion(5, 5, 2)],
}
MEASURED = {"a": np.array([True, True, False]), "b": np.array([True, True])}


def test_draws_only_measured_lesions_once_each_and_repeats_with_the_seed():
    drawn = pairs.draw_pairs(LESIONS, MEASURED, ("abpn", "detect_fill"), 10, seed=3)
    assert len(drawn) == 4
    assert len({(p.photo, p.index) for p in drawn}) == 4
    assert ("a", 2) not in {(p.photo, p.index) for p in drawn}
    assert all({p.first, p.second} == {"abpn", "detect_fill"} for p in drawn)
    assert drawn == pairs.draw_pairs(LESIONS, MEASURED, ("abpn", "detect_fill"), 10, seed=3)


def test_sides_are_shuffled():
    many = {"p": [Lesion(10 * i + 5, 5, 2) for i in range(200)]}
    drawn = pairs.draw_pairs(many, {"p": np.ones(200, bool)}, ("x", "y"), 200, seed=0)
    firsts = sum(p.first == "x" for p in drawn)
    assert 60 < firsts < 140


def test_crop_box_stays_inside_the_photo_and_holds_the_lesion():
    assert pairs.crop_box((50, 80, 3), Lesion(3, 45, 2)) == (0, 29, 19, 50)
    x0, y0, x1, y1 = pairs.crop_box((400, 400, 3), Lesion(200, 200, 10))
    assert (x1 - x0, y1 - y0) == (80, 80)


def test_picture_shows_before_then_the_two_results_in_their_order():
    rng = np.random.default_rng(0)
    before = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    first = np.zeros_like(before)
    second = np.full_like(before, 255)
    lesion = Lesion(32, 32, 3)
    picture = np.asarray(pairs.render_pair(before, first, second, lesion))
    side = 2 * pairs.MIN_HALF * 6  # 32 px enlarged to about 192
    assert picture.shape[1] == 3 * side + 2 * 4
    body = picture[-side:]
    assert (body[:, side + 4 : 2 * side + 4] == 0).all()
    assert (body[:, 2 * side + 8 :] == 255).all()
    # The circle is drawn on the "before" panel only, around the lesion, not on its centre.
    centre = body[side // 2, side // 2]
    assert (centre == before[32, 32]).all()


def test_score_counts_each_method_overall_and_where_the_measure_disagrees():
    key = [
        {"picture": "p0", "first": "abpn", "second": "dnf", "removed": {"abpn": 0.8, "dnf": 0.9}},
        {"picture": "p1", "first": "dnf", "second": "abpn", "removed": {"abpn": 0.8, "dnf": 0.9}},
        {"picture": "p2", "first": "dnf", "second": "abpn", "removed": {"abpn": 0.9, "dnf": 0.5}},
        {"picture": "p3", "first": "abpn", "second": "dnf", "removed": {"abpn": 0.9, "dnf": 0.9}},
    ]
    result = pairs.score(key, {"p0": "1", "p1": "2", "p2": "1", "p3": "same"})
    assert result["all"] == {"pictures": 4, "abpn": 2, "dnf": 1, "same": 1, "unanswered": 0}
    assert result["disc measure favours dnf"] == {
        "pictures": 2,
        "abpn": 2,
        "dnf": 0,
        "same": 0,
        "unanswered": 0,
    }
    assert result["disc measure favours abpn"]["dnf"] == 1
    assert pairs.score(key, {})["all"]["unanswered"] == 4
    with pytest.raises(ValueError, match="p0"):
        pairs.score(key, {"p0": "left"})


def test_score_command_reads_the_key_and_answers(tmp_path, capsys):
    key = [{"picture": "p0", "first": "x", "second": "y", "removed": {"x": 0.5, "y": 0.9}}]
    (tmp_path / "key.json").write_text(json.dumps(key))
    (tmp_path / "answers.json").write_text(json.dumps({"p0": "1"}))
    argv = [
        "score",
        "--key",
        str(tmp_path / "key.json"),
        "--answers",
        str(tmp_path / "answers.json"),
    ]
    assert pairs.main(argv) == 0
    out = capsys.readouterr().out
    assert "all: pictures 1, x 1, y 0, same 0, unanswered 0" in out
    assert "disc measure favours y: pictures 1, x 1" in out


def test_render_without_the_photos_says_so_and_writes_nothing(tmp_path, capsys):
    argv = ["render", "--photos", str(tmp_path), "--out", str(tmp_path / "out")]
    assert pairs.main([*argv, "--key", str(tmp_path / "key.json")]) == 0
    assert "no marked photos found" in capsys.readouterr().out
    assert not (tmp_path / "out").exists() and not (tmp_path / "key.json").exists()
