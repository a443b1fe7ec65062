"""Evaluation: held-out real photos, the independent painter, baselines and quality measures.

Run from a checkout (``python -m evaluation.evaluate``); training never imports it.
"""
