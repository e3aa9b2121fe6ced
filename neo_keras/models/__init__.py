"""Model definitions: `gpt_neo/`."""
