"""Independent evaluation painter: synthetic skin defects on clean face photos.

Used only to evaluate the retoucher, never to train it; it shares no code with `training.data`.
"""

from evaluation.evalpaint.kinds import KINDS
from evaluation.evalpaint.painter import PaintedFace, paint_face

__all__ = ["KINDS", "PaintedFace", "paint_face"]
