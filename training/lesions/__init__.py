"""Measurements on real lesions: the skin gate's coverage and the training painter's fit.

They read research-only photos (never the training data): nothing here is imported by
``training.train`` or the samplers (tested in ``tests/training/test_lesions.py``).
"""
