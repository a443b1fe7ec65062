"""Training: the sampler, the training painter, losses and the resumable training loop.

Run from a checkout (``python -m training.train``); never imported by the service, and never
reaching ``evaluation`` (tests/test_import_boundaries.py).
"""
