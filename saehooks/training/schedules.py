"""Learning-rate and penalty-coefficient schedules as pure functions of the step."""

from __future__ import annotations


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, decay_fraction: float) -> float:
    """Linear warm-up from 0, constant, then linear decay to 0 over the final ``decay_fraction``.

    ``step`` counts from 0; the value multiplies the peak learning rate for that step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = int(total_steps * decay_fraction)
    decay_start = total_steps - decay_steps
    if decay_steps > 0 and step >= decay_start:
        return max(0.0, (total_steps - step) / decay_steps)
    return 1.0

