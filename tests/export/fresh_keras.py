"""Reloads the Keras and Hugging Face exports with neo_keras in a new process.

python fresh_keras.py KERAS_EXPORT HF_EXPORT INPUTS.npz TEXT OUTPUTS.npz
"""

import sys


def main(keras_export, hf_export, inputs_path, text, outputs_path):
    import os

    import keras
    import numpy as np

    import neo_keras
    from neo_keras import GPTNeoCausalLM  # noqa: F401  (registers the classes load_model reads)

    inputs = dict(np.load(inputs_path))
    single_file = keras.saving.load_model(os.path.join(keras_export, "model.keras"))
    preset = neo_keras.GPTNeoCausalLM.from_preset(keras_export)
    hf = neo_keras.GPTNeoCausalLM.from_preset(hf_export)
    np.savez(
        outputs_path,
        keras_class=np.array(type(single_file).__name__),
        keras_logits=np.asarray(single_file(inputs)),
        keras_token_ids=np.asarray(single_file.preprocessor.tokenizer(text)),
        preset_logits=np.asarray(preset(inputs)),
        preset_token_ids=np.asarray(preset.preprocessor.tokenizer(text)),
        hf_logits=np.asarray(hf(inputs)),
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
