"""The shipped default weights: they load by default, verify, and actually retouch."""

import numpy as np

from model.data.dataset import make_eval_set
from model.engine import RetouchEngine
from model.quality import squared_error
from model.weights import DEFAULT_WEIGHTS, file_sha256, load_model, sidecar_paths


def test_default_weights_load_and_match_their_recorded_hash() -> None:
    loaded = load_model()
    recorded = sidecar_paths(DEFAULT_WEIGHTS)[1].read_text().split()[0]
    assert loaded.info.sha256 == recorded == file_sha256(DEFAULT_WEIGHTS)
    assert loaded.info.name == "abpn-default"


def test_shipped_weights_beat_identity_inside_the_masks() -> None:
    # A seed the evaluation set does not use: freshly generated samples.
    samples = make_eval_set(n=8, size=192, seed=20261124)
    engine = RetouchEngine(load_model().model)
    results = engine.retouch_batch([s.input for s in samples], 1.0, return_mask=True)
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
