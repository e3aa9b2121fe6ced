"""codeclippy dataset."""
