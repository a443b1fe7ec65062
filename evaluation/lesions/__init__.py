"""Real-blemish evaluation: real acne photos (research-only, extracted by `extract`), marks made
by hand (`marks.json`), measures of lesion contrast, texture and protected pixels (`measure`),
a classical detect-and-fill baseline and an oracle fill (`fill`).

Run it with `python -m evaluation.lesions`.
"""
