"""The shipped default weights: they load by default, verify, and actually retouch."""

import numpy as np
from images import grace_hopper

from evaluation.quality import squared_error
from model.engine import RetouchEngine
from model.faces import FaceParse
from model.weights import DEFAULT_WEIGHTS, file_sha256, load_model, sidecar_paths
from training.data.blemishes import paint_blemishes, quantise
from training.data.dataset import make_eval_set


def test_default_weights_load_and_match_their_recorded_hash() -> None:
    loaded = load_model()
    recorded = sidecar_paths(DEFAULT_WEIGHTS)[1].read_text().split()[0]
    assert loaded.info.sha256 == recorded == file_sha256(DEFAULT_WEIGHTS)
    assert loaded.info.name == "abpn-default"


def test_shipped_weights_beat_identity_inside_the_masks() -> None:
    # A seed the evaluation set does not use: freshly generated samples.
    samples = make_eval_set(n=8, size=192, seed=20261124)
    engine = RetouchEngine(load_model().model)
    # Crops of skin without a whole face: the network runs on each as one all-skin region.
    parses = [FaceParse.whole(s.input.shape[:2]) for s in samples]
    results = engine.retouch_batch([s.input for s in samples], 1.0, True, parses=parses)
    inside_model = inside_identity = outside_model = 0.0
    n_in = n_out = 0
    for sample, result in zip(samples, results, strict=True):
        se_model = squared_error(result.image, sample.target)
        se_identity = squared_error(sample.input, sample.target)
        inside_model += float(se_model[sample.mask].sum())
        inside_identity += float(se_identity[sample.mask].sum())
        outside_model += float(se_model[~sample.mask].sum())
        n_in += int(sample.mask.sum())
        n_out += int((~sample.mask).sum())
    assert n_in > 0
    gain_db = 10 * np.log10(inside_identity / inside_model)
    assert gain_db > 3.0, f"only {gain_db:.2f} dB better than identity inside the masks"
    outside_psnr = -10 * np.log10(max(outside_model / n_out, 1e-10))
    assert outside_psnr > 40.0, f"outside the masks only {outside_psnr:.1f} dB"


def test_shipped_weights_remove_defects_painted_on_a_real_face() -> None:
    clean = grace_hopper()
    engine = RetouchEngine(load_model().model)
    parse = engine.parse(clean)
    region = parse.regions[0]
    b = region.box
    crop = clean[b.y0 : b.y1, b.x0 : b.x1].astype(np.float32) / 255.0
    width = region.faces[0].width
    before = after = 0.0
    # One draw of defects moves the gain a lot (1.3-3.2 dB over eight draws with the shipped
    # gate, 1.1-5.3 with the one before): the errors are pooled over four.
    for seed in range(20261201, 20261205):
        rng = np.random.default_rng(seed)
        painted_crop, _ = paint_blemishes(crop, region.skin / 255.0, rng, scale=width / 250.0)
        painted = clean.copy()
        painted[b.y0 : b.y1, b.x0 : b.x1] = quantise(painted_crop)
        mask = (painted != clean).any(axis=-1)
        assert mask.sum() > 200
        result = engine.retouch(painted, 1.0).image
        before += float(squared_error(painted, clean)[mask].sum())
        after += float(squared_error(result, clean)[mask].sum())
    gain_db = 10 * np.log10(before / after)
    # Measured 2.65 dB for version 2 with the shipped gate and 3.77 with the one before issue
    # 19's second pass, which draws its defects elsewhere: the new gate's skin past the jawline
    # holds defects the network was never trained on. On the same defects the new gate does as
    # well or better (docs/model.md). Version 1, on the whole photo, gained 0.65 dB on one draw.
    # 2.1.0 gains 2.59 dB, 2.2.0 2.28 (its red-blob prior in an a* form, 1.72, failed this by
    # erasing stretches of the glasses' rim: docs/model.md, "Fourth pass"), 2.3.0 2.59 (the
    # prior grown by a pixel, 1.83, failed this by joining dots along under-eye wrinkles:
    # "Fifth pass"), 2.4.0 2.57, 2.5.0 2.46 (its cap keeps the LRB from brightening past the
    # skin around: "Version 2.5"), 3.0.0 2.42 (fine-tuned with the mask anchored: "Seventh
    # pass").
    assert gain_db > 2.0, f"only {gain_db:.2f} dB better than identity inside the defects"
