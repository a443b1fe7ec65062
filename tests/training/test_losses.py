"""The mask anchor charges a rise of the mask above the teacher's, and only away from defects."""

import torch

from training.losses import mask_anchor


def _logits(value: float) -> torch.Tensor:
    return torch.full((1, 1, 9, 9), value)


def test_anchor_is_zero_where_the_student_matches_or_falls_below_the_teacher() -> None:
    target = torch.zeros(1, 1, 9, 9)
    assert mask_anchor(_logits(-2.0), _logits(-2.0), target) == 0.0
    assert mask_anchor(_logits(-5.0), _logits(-2.0), target) == 0.0


def test_anchor_charges_a_rise_on_clean_pixels_by_its_size() -> None:
    target = torch.zeros(1, 1, 9, 9)
    rise = mask_anchor(_logits(0.0), _logits(-20.0), target)
    assert torch.isclose(rise, torch.tensor(0.5), atol=1e-6)


def test_anchor_leaves_the_defect_and_its_rim_free() -> None:
    target = torch.zeros(1, 1, 9, 9)
    target[..., 4, 4] = 1.0
    student = _logits(-20.0)
    student[..., 3:6, 3:6] = 20.0  # the defect and the pixels next to it
    assert mask_anchor(student, _logits(-20.0), target) == 0.0
    student[..., 1, 1] = 20.0  # two pixels clear of it
    assert mask_anchor(student, _logits(-20.0), target) > 0.0
