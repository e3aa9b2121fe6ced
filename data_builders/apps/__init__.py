"""apps dataset."""
