"""Serves an exported SavedModel with TensorFlow alone, as TF Serving would.

    python fresh_saved_model.py SAVED_MODEL SERVE_INPUTS.npz PROMPTS.npz CALLS.json OUTPUTS.npz

Importing neo_keras or keras_hub is made to fail, so any dependency on them shows up as an
error. Writes the `serve` logits of SERVE_INPUTS; for each `generate` call named in CALLS,
its outputs on the prompt set the call names (`<set>/token_ids`, `<set>/padding_mask` in
PROMPTS); the signatures' input shapes; and the project modules that ended up loaded.
"""

import importlib.abc
import json
import sys

FORBIDDEN = ("neo_keras", "keras_hub")


class RefuseProjectImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"serving the SavedModel must not import {name}")
        return None


sys.meta_path.insert(0, RefuseProjectImports())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(saved_model_dir, serve_inputs_path, prompts_path, calls_path, outputs_path):
    serve_inputs = dict(np.load(serve_inputs_path))
    prompts = dict(np.load(prompts_path))
    with open(calls_path) as f:
        calls = json.load(f)
    loaded = tf.saved_model.load(saved_model_dir)
    serve, generate = loaded.signatures["serve"], loaded.signatures["generate"]
    results = {"logits": serve(**{k: tf.constant(v) for k, v in serve_inputs.items()})["logits"]}
    for name, settings in calls.items():
        prompt_set = settings["prompts"]
        outputs = generate(
            token_ids=tf.constant(prompts[f"{prompt_set}/token_ids"]),
            padding_mask=tf.constant(prompts[f"{prompt_set}/padding_mask"]),
            max_new_tokens=tf.constant(settings["max_new_tokens"], tf.int32),
            temperature=tf.constant(settings["temperature"], tf.float32),
            top_k=tf.constant(settings["top_k"], tf.int32),
            top_p=tf.constant(settings["top_p"], tf.float32),
            seed=tf.constant(settings["seed"], tf.int32),
        )
        for key, value in outputs.items():
            results[f"{name}/{key}"] = value
    shapes = {
        name: {
            key: spec.shape.as_list()
            for key, spec in loaded.signatures[name].structured_input_signature[1].items()
        }
        for name in ("serve", "generate")
    }
    loaded_modules = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    results["report"] = np.array(json.dumps({"shapes": shapes, "modules": loaded_modules}))
    np.savez(outputs_path, **{k: np.asarray(v) for k, v in results.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
