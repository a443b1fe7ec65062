"""How close the training painter's lesions are to real ones: statistics and a classifier.

    python -m training.lesions.fit --research /work/wt-issue-19-eval/data/lesions

Real lesions are the strict spots (``spots.is_strict``) that ``spots.find_spots`` finds on
**research-only** photos (ACNE04 close-ups): they are measured here and never written anywhere
training reads. Painted lesions are the training painter's defects on the training
faces, each taken at its strongest blob pixel and kept only when it passes the same strict test.
Both are cut as Lab patches with the face scaled to :data:`FACE_SIDE` pixels wide.

Printed: percentiles of size (radius over face width), Lab contrast (dL*, da*, db*) and distance
to the nearest lesion of the same face, for real and painted lesions; and the held-out accuracy of
a logistic regression telling real patches from painted ones (50% = indistinguishable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from training.data.blemishes import paint_blemishes
from training.data.face_crops import training_faces
from training.lesions.spots import contrast_maps, find_spots, is_strict, lab_float

FACE_SIDE = 256
"""Face width (pixels) that every patch is scaled to."""
PATCH = 24
"""Patch side at that scale: about 9% of the face width, a lesion with its surroundings."""
ACNE_KINDS = ("acne", "pustule")
"""The painter's kinds that stand for the red lesions the strict test keeps."""


def _patch(lab: np.ndarray, x: float, y: float) -> np.ndarray | None:
    h, w = lab.shape[:2]
    x0, y0 = round(x) - PATCH // 2, round(y) - PATCH // 2
    if x0 < 0 or y0 < 0 or x0 + PATCH > w or y0 + PATCH > h:
        return None
    return lab[y0 : y0 + PATCH, x0 : x0 + PATCH].copy()


def _nearest(points: list[tuple[float, float]], size: float) -> list[float]:
    if len(points) < 2:
        return []
    p = np.asarray(points)
    d = np.hypot(*(p[:, None] - p[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    return list(d.min(axis=1) / size)


def real_lesions(image_dir: Path) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    """Patches, stats rows (radius share, dL, da, db) and nearest-lesion distances (face
    widths) of the strict spots on every face of the photos in `image_dir`."""
    from model.faces import FaceParser

    parser = FaceParser()
    patches, rows, nearest = [], [], []
    try:
        for path in sorted(image_dir.glob("*.jpg")):
            image = np.asarray(Image.open(path).convert("RGB"))
            for face in parser.parse(image).faces:
                if face.landmarks is None:
                    continue
                k = FACE_SIDE / face.width
                lab = lab_float(cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA))
                kept = []
                for s in find_spots(image, face):
                    if s.strict:
                        kept.append((s.x, s.y))
                        rows.append((s.radius / face.width, *s.d_lab))
                        patch = _patch(lab, s.x * k, s.y * k)
                        if patch is not None:
                            patches.append(patch)
                nearest += _nearest(kept, face.width)
    finally:
        parser.close()
    return patches, np.asarray(rows), nearest


def painted_lesions(
    rng: np.random.Generator, draws: int
) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    """The same for the training painter's red lesions on `draws` painted training faces."""
    patches, rows, nearest = [], [], []
    crops = training_faces()
    for _ in range(draws):
        crop = crops[int(rng.integers(len(crops)))]
        k = FACE_SIDE / crop.face_width
        image = cv2.resize(crop.image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        skin = cv2.resize(crop.skin, (image.shape[1], image.shape[0])) >= 0.75
        clean = image.astype(np.float32) / 255.0
        painted, mask = paint_blemishes(
            clean, skin.astype(np.float32), rng, scale=FACE_SIDE / 250.0, kinds=ACNE_KINDS
        )
        lab = lab_float(np.clip(np.rint(painted * 255), 0, 255).astype(np.uint8))
        best, best_r, best_d = contrast_maps(lab, skin, FACE_SIDE)
        n, labels = cv2.connectedComponents(mask.astype(np.uint8))
        kept = []
        for i in range(1, n):
            ys, xs = np.nonzero(labels == i)
            j = int(np.argmax(best[ys, xs]))
            y, x = int(ys[j]), int(xs[j])
            if not is_strict(best_d[y, x], float(best_r[y, x]), FACE_SIDE):
                continue
            kept.append((x, y))
            rows.append((best_r[y, x] / FACE_SIDE, *best_d[y, x]))
            patch = _patch(lab, x, y)
            if patch is not None:
                patches.append(patch)
        nearest += _nearest(kept, FACE_SIDE)
    return patches, np.asarray(rows), nearest


def _features(patches: list[np.ndarray]) -> np.ndarray:
    """Each patch minus its own median colour (skin tone and camera differ between the two
    sets and say nothing about the lesion), lightly blurred (JPEG and sensor grain differ too)."""
    out = []
    for p in patches:
        q = cv2.GaussianBlur(p - np.median(p.reshape(-1, 3), axis=0), (0, 0), 0.8)
        out.append(q.ravel() / 10.0)
    return np.asarray(out, np.float32)


def heldout_accuracy(real: list[np.ndarray], painted: list[np.ndarray], seed: int = 0) -> float:
    """Held-out accuracy of an L2-regularised logistic regression telling real patches from
    painted ones, on balanced classes, 70/30 split, patches flipped and rotated 4 ways."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(painted))
    if n < 10:
        raise ValueError(f"too few lesions to compare: {len(real)} real, {len(painted)} painted")
    picks = [rng.permutation(len(s))[:n] for s in (real, painted)]
    xs = [_features([s[i] for i in p]) for s, p in zip((real, painted), picks, strict=True)]
    x = np.concatenate(xs)
    y = np.repeat(np.float32([1.0, 0.0]), n)
    order = rng.permutation(2 * n)
    cut = int(0.7 * 2 * n)
    train, test = order[:cut], order[cut:]

    def augment(a: np.ndarray) -> np.ndarray:
        imgs = a.reshape(-1, PATCH, PATCH, 3)
        return np.concatenate([np.rot90(imgs, k, axes=(1, 2)) for k in range(4)]).reshape(
            4 * len(a), -1
        )

    xt = torch.from_numpy(np.ascontiguousarray(augment(x[train])))
    yt = torch.from_numpy(np.tile(y[train], 4))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xt @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt)
        loss = loss + 1e-2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (torch.from_numpy(x[test]) @ w + b) > 0
    return float((pred.numpy() == (y[test] > 0.5)).mean())


def _summary(rows: np.ndarray, nearest: list[float]) -> dict:
    q = (10, 50, 90)
    names = ("radius/face", "dL", "da", "db")
    out = {n: np.percentile(rows[:, i], q).round(4).tolist() for i, n in enumerate(names)}
    out["nearest/face"] = np.percentile(nearest, q).round(3).tolist() if nearest else None
    out["count"] = len(rows)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: print the comparison as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--research", type=Path, required=True, help="research-only photos")
    parser.add_argument("--draws", type=int, default=120, help="painted training faces")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    real, real_rows, real_nn = real_lesions(args.research)
    painted, painted_rows, painted_nn = painted_lesions(
        np.random.default_rng(args.seed), args.draws
    )
    report = {
        "real": _summary(real_rows, real_nn),
        "painted": _summary(painted_rows, painted_nn),
        "patches": {"real": len(real), "painted": len(painted)},
        "heldout_accuracy": heldout_accuracy(real, painted, args.seed),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
