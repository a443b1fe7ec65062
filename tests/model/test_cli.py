"""abpn-retouch: formats, orientation, ICC, bad files, explicit random weights."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from images import grace_hopper
from PIL import Image, ImageCms

from model.cli import main
from model.faces import FaceParser


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    paths = {}
    rgba = np.dstack([_pixels(40, 60), np.full((40, 60), 200, np.uint8)])
    Image.fromarray(rgba).save(d / "a.png", icc_profile=_srgb_icc())
    paths["png"] = d / "a.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(_pixels(30, 50, 1)).save(d / "b.jpg", exif=exif, quality=95)
    paths["jpeg"] = d / "b.jpg"
    Image.fromarray(_pixels(32, 32, 2)).save(d / "c.webp", lossless=True)
    paths["webp"] = d / "c.webp"
    Image.fromarray(_pixels(20, 24, 3)).save(d / "d.tiff")
    paths["tiff"] = d / "d.tiff"
    (d / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths["bad"] = d / "bad.jpg"
    return paths


def test_retouches_every_format_and_keeps_metadata(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = [inputs[k] for k in ("png", "jpeg", "webp", "tiff")]
    assert main([*map(str, files), "-o", str(out), "--weights", "random", "--mask"]) == 0
    png = Image.open(out / "a.png")
    assert png.format == "PNG" and png.mode == "RGBA" and png.size == (60, 40)
    assert png.info.get("icc_profile") == Image.open(inputs["png"]).info["icc_profile"]
    assert np.array_equal(np.asarray(png)[..., 3], np.full((40, 60), 200, np.uint8))
    jpg = Image.open(out / "b.jpg")
    assert jpg.format == "JPEG" and jpg.size == (30, 50)  # orientation applied: now portrait
    assert jpg.getexif().get(0x0112, 1) == 1
    assert Image.open(out / "c.webp").format == "WEBP"
    assert Image.open(out / "d.tiff").format == "TIFF"
    mask = Image.open(out / "a.mask.png")
    assert mask.mode == "L" and mask.size == (60, 40)


def test_strength_zero_keeps_lossless_pixels(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main([str(inputs["png"]), "-o", str(out), "--weights", "random", "--strength", "0"]) == 0
    assert np.array_equal(
        np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(inputs["png"]))
    )


def test_bad_file_is_reported_and_the_others_still_processed(inputs, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main([str(inputs["bad"]), str(inputs["png"]), "-o", str(out), "--weights", "random"])
    assert code == 1
    assert "bad.jpg" in capsys.readouterr().err
    assert (out / "a.png").is_file() and not (out / "bad.jpg").exists()


def test_unloadable_weights_fail_clearly(inputs, tmp_path, capsys) -> None:
    code = main([str(inputs["png"]), "-o", str(tmp_path / "o"), "--weights", "/nope.safetensors"])
    assert code == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_bad_arguments_are_refused(inputs, tmp_path) -> None:
    for bad in (["--strength", "2"], ["--whitening", "1.6"], ["--whitening", "-1"]):
        with pytest.raises(SystemExit):
            main([str(inputs["png"]), "-o", str(tmp_path), *bad])


def test_a_photo_left_unchanged_is_written_bit_for_bit(inputs, tmp_path: Path) -> None:
    """No face in these photos: each file is written as it was, not re-encoded; the one whose
    EXIF orientation had to be applied is re-encoded upright."""
    out = tmp_path / "out"
    files = [inputs[k] for k in ("png", "jpeg", "webp", "tiff")]
    assert main([*map(str, files), "-o", str(out), "--weights", "random"]) == 0
    for key in ("png", "webp", "tiff"):
        assert (out / inputs[key].name).read_bytes() == inputs[key].read_bytes(), key
    assert (out / "b.jpg").read_bytes() != inputs["jpeg"].read_bytes()


def test_whitening_and_mask_on_a_real_portrait(tmp_path: Path, capsys) -> None:
    portrait = grace_hopper()
    src = tmp_path / "hopper.png"
    Image.fromarray(portrait).save(src)
    noface = tmp_path / "noise.png"
    Image.fromarray(_pixels(50, 70)).save(noface)
    out = tmp_path / "out"
    args = [str(src), str(noface), "-o", str(out), "--strength", "1", "--whitening", "1", "--mask"]
    assert main(args) == 0
    result = np.asarray(Image.open(out / "hopper.png")).astype(int)
    mask = np.asarray(Image.open(out / "hopper.mask.png"))
    changed = (result != portrait).any(axis=-1)
    assert 0.02 < changed.mean() < 0.3
    assert result[changed].mean() > portrait[changed].mean()  # whitening lightens
    parser = FaceParser()
    skin = parser.parse(portrait).skin_mask(portrait.shape[:2])
    parser.close()
    assert not mask[skin == 0].any() and not changed[skin == 0].any()  # gated by the skin
    assert np.array_equal(np.asarray(Image.open(out / "noise.png")), _pixels(50, 70))
    assert "noise.png: no face found" in capsys.readouterr().err


def test_console_module_runs(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.cli",
            str(inputs["tiff"]),
            "-o",
            str(out),
            "--weights",
            "random",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "random" in proc.stderr
    assert Image.open(io.BytesIO((out / "d.tiff").read_bytes())).size == (24, 20)
