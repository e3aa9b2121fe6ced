"""A first look on any machine: a tokenizer and a small GPT-Neo on local code, end to end.

Trains a byte-level BPE on the Python standard library, trains a tiny GPT-Neo on it for a
few dozen steps, samples a completion, and writes the model as a Hugging Face checkpoint
that `transformers` reads back with the same logits.

    python -m neo_keras.demo --output_dir demo_output
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("output_dir", "demo_output", "Where the demo writes its artefacts.")
flags.DEFINE_integer("files", 300, "Standard-library files to learn from.")
flags.DEFINE_integer("steps", 40, "Training steps.")

SEQUENCE_LENGTH = 128


def standard_library_texts(limit: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.glob("*.py"))[:limit]:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return texts


def main(argv: list[str]) -> None:
    del argv
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    from neo_keras import GPTNeoBackbone, GPTNeoCausalLM, GPTNeoCausalLMPreprocessor
    from neo_keras.data.tokenizer_training import train_byte_level_bpe
    from neo_keras.models.gpt_neo import hf_convert, presets
    from neo_keras.training.lm_trainer import CausalLMTrainer

    output = Path(flags.FLAGS.output_dir)
    texts = standard_library_texts(flags.FLAGS.files)
    tokenizer_dir = train_byte_level_bpe(texts, output / "tokenizer", vocab_size=2048)
    tokenizer = hf_convert.load_tokenizer(str(tokenizer_dir))
    print(f"tokenizer: {tokenizer.vocabulary_size()} tokens, trained on {len(texts)} files")

    keras.utils.set_random_seed(0)
    config = presets.backbone_config(
        "gpt_neo_tiny", vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=256
    )
    preprocessor = GPTNeoCausalLMPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)
    model = GPTNeoCausalLM(GPTNeoBackbone(**config), preprocessor=preprocessor)

    examples = tf.data.Dataset.from_tensor_slices(preprocessor(texts))
    batches = examples.shuffle(1024, seed=0).repeat().batch(16, drop_remainder=True)
    trainer = CausalLMTrainer(model, clip_norm=1.0)
    trainer.compile(optimizer=keras.optimizers.AdamW(2e-3))
    history = trainer.fit(batches, steps_per_epoch=flags.FLAGS.steps // 4, epochs=4, verbose=2)
    losses = history.history["loss"]
    print(f"training loss by quarter: {' -> '.join(f'{v:.3f}' for v in losses)}")

    model.compile(sampler="greedy")
    prompt = "def main():\n    "
    print("completion of", repr(prompt), "->", repr(model.generate(prompt, max_length=48)))

    export_dir = output / "hf_checkpoint"
    if export_dir.exists():
        import shutil

        shutil.rmtree(export_dir)
    model.export_to_transformers(str(export_dir))
    import torch
    from transformers import GPTNeoForCausalLM

    token_ids = np.asarray(tokenizer(prompt))[None, :]
    ours = np.asarray(model({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}))
    with torch.no_grad():
        theirs = GPTNeoForCausalLM.from_pretrained(export_dir)(torch.from_numpy(token_ids).long())
    difference = np.abs(ours - theirs.logits.numpy()).max()
    print(
        f"Hugging Face checkpoint at {export_dir}; transformers logits differ by {difference:.2e}"
    )


if __name__ == "__main__":
    app.run(main)
