"""The data layer: tokenizers, corpus formats, TFDS builder support and the training input.

Modules are imported one by one (`neo_keras.data.pipeline`, `neo_keras.data.apps`, ...) so that
a builder process loads only what it uses.
"""
