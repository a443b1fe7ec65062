"""Real-blemish evaluation: what each method does to hand-marked real acne.

    python -m evaluation.lesions [--photos data/lesions] [--size native|2048]
                                 [--weights PATH] [--out bench/results/lesions.json]

Methods: identity, the classic filter, a classical detect-and-fill written here (its own
detector, never the marks), ABPN through the engine's public API, and an oracle fill of the
marked discs (an upper bound, not a method). Prints Markdown tables (per photo, pooled, ABPN
stage by stage) and writes every figure as JSON. Photos not extracted (see
`evaluation.lesions.extract`) are skipped; with none at hand it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from evaluation.lesions.marks import MARKS, load_marked, load_marks, photo_path
from evaluation.lesions.measure import (
    Lesion,
    centre_values,
    disc_means,
    edges_added_count,
    lesion_contrast,
    protected_changed,
    ring_means,
    share_removed,
    smoothed_gradient,
    summarize,
    texture_kept,
    to_lab,
    wide_contrast,
)
from evaluation.tables import markdown_table

METHODS = ("identity", "classic", "detect_fill", "abpn", "oracle")
LABELS = {
    "identity": "identity",
    "classic": "classic filter",
    "detect_fill": "detect and fill",
    "abpn": "ABPN",
    "oracle": "oracle fill (upper bound)",
}
GATE = 127
FIRES = 64


def _run_methods(engine, image: np.ndarray, parse, lesions: list[Lesion]) -> dict:
    """Each method's output on `image`, with the skin gate, ABPN's mask and the detector's count."""
    from evaluation.baseline import classic_retouch
    from evaluation.lesions.fill import detect_and_fill, fill_discs

    skin = parse.skin_mask(image.shape[:2])
    (res,) = engine.retouch_batch([image], 1.0, True, parses=[parse])
    filled, found = detect_and_fill(image, skin)
    return {
        "skin": skin,
        "mask": res.mask,
        "found": len(found),
        "out": {
            "identity": image,
            "classic": classic_retouch(image),
            "detect_fill": filled,
            "abpn": res.image,
            "oracle": fill_discs(image, lesions),
        },
    }


def evaluate_photo(engine, image: np.ndarray, lesions: list[Lesion]) -> dict:
    """Every figure for one photo: per method, and ABPN's stages."""
    parse = engine.parse(image)
    runs = _run_methods(engine, image, parse, lesions)
    skin, mask = runs["skin"], runs["mask"]
    lab_before = to_lab(image)
    before = lesion_contrast(lab_before, lesions)
    wide_before = wide_contrast(lab_before, lesions)
    gradient_before = smoothed_gradient(lab_before)
    result: dict = {
        "size": [int(image.shape[1]), int(image.shape[0])],
        "marked": len(lesions),
        "face_found": bool((skin > GATE).any()),
        "detected_by_detect_fill": runs["found"],
        "methods": {},
    }
    shares = {}
    for method, out in runs["out"].items():
        lab = to_lab(out)
        share = share_removed(before, lesion_contrast(lab, lesions))
        wide = share_removed(wide_before, wide_contrast(lab, lesions))
        changed, outside = protected_changed(image, out, skin)
        added, skin_pixels = edges_added_count(gradient_before, smoothed_gradient(lab), skin)
        shares[method] = share
        result["methods"][method] = {
            **summarize(share),
            "texture_kept": texture_kept(image, out, skin, lesions),
            "protected_changed": changed,
            "protected_pixels": outside,
            "edges_added": _share(added, skin_pixels),
            "edges_added_pixels": added,
            "skin_pixels": skin_pixels,
            "per_lesion_removed": [None if np.isnan(s) else round(float(s), 4) for s in share],
            **_wide(summarize(wide)),
            "per_lesion_wide_removed": [None if np.isnan(s) else round(float(s), 4) for s in wide],
        }
    centre_in = centre_values(skin, lesions) > GATE
    disc_in = disc_means((skin > GATE).astype(np.float32), lesions) > 0.5
    # A lesion outside the gate whose surroundings are skin is a hole cut in the gate at the
    # lesion itself, not the gate's edge (hairline, nose, jaw) passing by.
    hole = ~centre_in & (ring_means((skin > GATE).astype(np.float32), lesions, 2, 4) > 0.5)
    fires = disc_means(mask.astype(np.float32), lesions) > FIRES
    abpn = shares["abpn"]
    result["abpn_stages"] = {
        "centre_in_gate": int(centre_in.sum()),
        "disc_in_gate": int(disc_in.sum()),
        "gate_hole": int(hole.sum()),
        "mask_fires": int(fires.sum()),
        "removed_where_fires": summarize(abpn[fires])["median_removed"],
        "removed_where_not": summarize(abpn[~fires])["median_removed"],
        "per_lesion": [
            {
                "centre_in_gate": bool(c),
                "disc_in_gate": bool(d),
                "gate_hole": bool(h),
                "fires": bool(f),
            }
            for c, d, h, f in zip(centre_in, disc_in, hole, fires, strict=True)
        ],
        "contrast_before": [None if np.isnan(b) else round(float(b), 3) for b in before],
    }
    result["wide_contrast_before"] = [
        None if np.isnan(b) else round(float(b), 3) for b in wide_before
    ]
    return result


def _share(part: int, total: int) -> float:
    return part / total if total else float("nan")


def _wide(summary: dict) -> dict:
    """`summarize`'s figures under the wide contrast's keys."""
    return {f"wide_{key}": value for key, value in summary.items()}


def _per_lesion(results: dict[str, dict], method: str, key: str) -> np.ndarray:
    """A per-lesion list of every photo, for one method, as floats (NaN where left out)."""
    return np.array(
        [np.nan if s is None else s for r in results.values() for s in r["methods"][method][key]],
        float,
    )


def pooled(results: dict[str, dict]) -> dict:
    """Figures over every lesion of every photo (texture kept: median over photos; protected
    changed and edges added: over all the photos' pixels)."""
    out: dict = {"methods": {}}
    for method in METHODS:
        shares = _per_lesion(results, method, "per_lesion_removed")
        changed = sum(r["methods"][method]["protected_changed"] for r in results.values())
        total = sum(r["methods"][method]["protected_pixels"] for r in results.values())
        kept = [r["methods"][method]["texture_kept"] for r in results.values()]
        added = sum(r["methods"][method]["edges_added_pixels"] for r in results.values())
        skin = sum(r["methods"][method]["skin_pixels"] for r in results.values())
        out["methods"][method] = {
            **summarize(shares),
            "texture_kept_median": float(np.nanmedian(kept)) if kept else float("nan"),
            "protected_changed_share": _share(changed, total),
            "edges_added_share": _share(added, skin),
            **_wide(summarize(_per_lesion(results, method, "per_lesion_wide_removed"))),
        }
    stages = [r["abpn_stages"] for r in results.values()]
    fires = np.array([p["fires"] for s in stages for p in s["per_lesion"]], bool)
    abpn = _per_lesion(results, "abpn", "per_lesion_removed")
    marked = sum(r["marked"] for r in results.values())
    out["abpn_stages"] = {
        "marked": marked,
        "centre_in_gate": sum(s["centre_in_gate"] for s in stages),
        "disc_in_gate": sum(s["disc_in_gate"] for s in stages),
        "gate_hole": sum(s["gate_hole"] for s in stages),
        "mask_fires": int(fires.sum()),
        "removed_where_fires": summarize(abpn[fires])["median_removed"],
        "removed_where_not": summarize(abpn[~fires])["median_removed"],
    }
    return out


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _share3(x: float) -> str:
    return "-" if x != x else f"{100 * x:.3f}%"


def _num(x: float, digits: int = 2) -> str:
    return "-" if x != x else f"{x:.{digits}f}"


def tables(results: dict[str, dict], pool: dict) -> str:
    """The report: per photo and method, pooled, and ABPN stage by stage."""
    header = (
        "photo",
        "method",
        "lesions",
        "median removed",
        "at least halved",
        "wide removed",
        "wide halved",
        "texture kept",
        "protected changed",
        "edges added",
    )
    rows = []
    for name, r in results.items():
        for method in METHODS:
            m = r["methods"][method]
            share = m["protected_changed"] / m["protected_pixels"] if m["protected_pixels"] else 0
            rows.append(
                (
                    name,
                    LABELS[method],
                    m["lesions"],
                    _num(m["median_removed"]),
                    _pct(m["halved"]),
                    _num(m["wide_median_removed"]),
                    _pct(m["wide_halved"]),
                    _num(m["texture_kept"]),
                    f"{100 * share:.3f}%",
                    _share3(m["edges_added"]),
                )
            )
    pool_rows = [
        (
            LABELS[method],
            m["lesions"],
            _num(m["median_removed"]),
            _pct(m["halved"]),
            _num(m["wide_median_removed"]),
            _pct(m["wide_halved"]),
            _num(m["texture_kept_median"]),
            f"{100 * m['protected_changed_share']:.3f}%",
            _share3(m["edges_added_share"]),
        )
        for method, m in pool["methods"].items()
    ]
    stage_rows = [
        (
            name,
            r["marked"],
            r["abpn_stages"]["centre_in_gate"],
            r["abpn_stages"]["disc_in_gate"],
            r["abpn_stages"]["gate_hole"],
            r["abpn_stages"]["mask_fires"],
            _num(r["abpn_stages"]["removed_where_fires"]),
            _num(r["abpn_stages"]["removed_where_not"]),
        )
        for name, r in results.items()
    ]
    s = pool["abpn_stages"]
    stage_rows.append(
        (
            "**all**",
            s["marked"],
            s["centre_in_gate"],
            s["disc_in_gate"],
            s["gate_hole"],
            s["mask_fires"],
            _num(s["removed_where_fires"]),
            _num(s["removed_where_not"]),
        )
    )
    stage_header = (
        "photo",
        "marked",
        "centre in skin gate",
        "disc mostly in gate",
        "outside: hole in gate",
        "mask fires",
        "removed where fires",
        "removed where not",
    )
    return "\n\n".join(
        (
            "Per photo:\n\n" + markdown_table(header, rows),
            "Pooled over all lesions (texture kept: median over photos; protected and edges added:"
            " all pixels):\n\n" + markdown_table(header[1:], pool_rows),
            "ABPN stage by stage:\n\n" + markdown_table(stage_header, stage_rows),
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/lesions"))
    parser.add_argument("--size", default="native", help="native, or a long side in px")
    parser.add_argument("--weights", default=None, help="a .safetensors checkpoint path")
    parser.add_argument("--out", type=Path, default=Path("bench/results/lesions.json"))
    parser.add_argument("--marks", type=Path, default=MARKS)
    parser.add_argument("--only", nargs="*", default=None, help="photo names")
    args = parser.parse_args(argv)
    if args.size != "native" and not args.size.isdigit():
        parser.error("--size is native or a long side in pixels")

    marks = load_marks(args.marks)
    names = [n for n in (args.only or marks) if marks.get(n)]
    present = [n for n in names if photo_path(args.photos, n).is_file()]
    if not present:
        print(
            f"no marked photos found in {args.photos}: extract them first "
            "(python -m evaluation.lesions.extract --source GIT_DIR --out data/lesions)"
        )
        return 0
    if len(present) < len(names):
        print(f"skipped, not extracted: {', '.join(sorted(set(names) - set(present)))}")

    import torch

    from model.engine import RetouchEngine
    from model.weights import load_model

    torch.set_num_threads(1)
    engine = RetouchEngine(load_model(args.weights).model)
    results = {}
    for name in present:
        image, lesions = load_marked(args.photos, name, marks[name], args.size)
        results[name] = evaluate_photo(engine, image, lesions)
        if not results[name]["face_found"]:
            print(f"{name}: no face found, ABPN returns it unchanged")
    pool = pooled(results)
    print(tables(results, pool))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "size": args.size,
        "weights": args.weights or "shipped",
        "photos": results,
        "pooled": pool,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
