"""Extract the real-blemish photos named in `manifest.json` from local copies of their sources.

The photos are research-only and stay out of this repository: each entry names a source
repository, the commit and path of the file in it, and the SHA-256 of its bytes. Files are read
with `git show COMMIT:PATH` from a local git directory (a clone or a bare mirror), checked
against the manifest, and written unchanged (JPEG bytes stay JPEG bytes); entries taken from
this project's own `data/photos` are cropped as the manifest says and written as PNG.

    python -m evaluation.lesions.extract --source /work/.mirror/owner+name/repo --out data/lesions
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

MANIFEST = Path(__file__).with_name("manifest.json")
REPO_ROOT = Path(__file__).resolve().parents[2]


class ExtractError(RuntimeError):
    """A file that cannot be read from its source, or whose bytes are not the manifest's."""


def load_manifest(path: Path = MANIFEST) -> dict:
    """The manifest, checked for the fields extraction and the evaluation rely on."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    sources = manifest["sources"]
    names = set()
    for photo in manifest["photos"]:
        for key in ("name", "source", "path", "sha256", "file"):
            if not isinstance(photo.get(key), str) or not photo[key]:
                raise ValueError(f"manifest entry {photo.get('name')!r} lacks {key!r}")
        if photo["source"] not in sources:
            raise ValueError(f"{photo['name']}: unknown source {photo['source']!r}")
        if len(photo["sha256"]) != 64:
            raise ValueError(f"{photo['name']}: sha256 is not 64 hex digits")
        if photo["name"] in names:
            raise ValueError(f"{photo['name']}: listed twice")
        names.add(photo["name"])
    return manifest


def _git_bytes(git_dir: Path, commit: str, path: str) -> bytes:
    done = subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise ExtractError(f"git show {commit[:12]}:{path}: {done.stderr.decode().strip()}")
    return done.stdout


def _git_dir(source: Path) -> Path:
    """`source` itself when it is a git directory, else its `.git`."""
    return source / ".git" if (source / ".git").exists() else source


def _checked(data: bytes, photo: dict) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != photo["sha256"]:
        raise ExtractError(
            f"{photo['name']}: sha256 {digest} is not the manifest's {photo['sha256']}"
        )
    return data


def _cropped_png(data: bytes, crop: list[int]) -> bytes:
    x0, y0, x1, y1 = crop
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[y0:y1, x0:x1]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="PNG")
    return out.getvalue()


def extract(manifest: dict, sources: list[Path], out: Path) -> list[Path]:
    """Write every photo of `manifest` whose source is at hand into `out`; the files written.

    A git source is used for the manifest's sources whose commit it holds; project photos are
    read from this checkout. Every file's bytes are checked before anything is written, so a
    wrong SHA-256 writes nothing.
    """
    ready: list[tuple[Path, bytes]] = []
    for photo in manifest["photos"]:
        source = manifest["sources"][photo["source"]]
        if source["kind"] == "project":
            data = _checked((REPO_ROOT / photo["path"]).read_bytes(), photo)
            ready.append((out / photo["file"], _cropped_png(data, photo["crop"])))
            continue
        for candidate in sources:
            try:
                data = _git_bytes(_git_dir(candidate), source["commit"], photo["path"])
            except ExtractError:
                continue
            ready.append((out / photo["file"], _checked(data, photo)))
            break
    out.mkdir(parents=True, exist_ok=True)
    for path, data in ready:
        path.write_bytes(data)
    return [path for path, _ in ready]


def main(argv: list[str] | None = None) -> int:
    """Command line: extract into `--out`; exit status 1 on a bad file, 0 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, action="append", default=[], help="git dir")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "lesions")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    manifest = load_manifest(args.manifest)
    try:
        written = extract(manifest, args.source, args.out)
    except ExtractError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    missing = {p["file"] for p in manifest["photos"]} - {p.name for p in written}
    print(f"wrote {len(written)} photos to {args.out}")
    if missing:
        print(f"not at hand (give --source): {', '.join(sorted(missing))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
