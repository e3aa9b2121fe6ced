"""Decoding: the one loop that extends prompts with a key/value cache, and how each next
token is chosen (greedy, temperature, top-k, top-p, with randomness that belongs to a row).

`GPTNeoCausalLM.generate`, the evaluator's sampler and the SavedModel's `generate` all run
`decode.decode_steps`.
"""
