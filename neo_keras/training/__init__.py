"""Training: masked loss, schedules, optimizers, strategies, the train step and callbacks."""
