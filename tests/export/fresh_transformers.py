"""Runs the Hugging Face export in `transformers`, without neo_keras.

python fresh_transformers.py HF_EXPORT INPUTS.npz TEXT OUTPUTS.npz
"""

import sys


def main(hf_export, inputs_path, text, outputs_path):
    import numpy as np
    import torch
    from transformers import AutoTokenizer, GPTNeoForCausalLM

    inputs = dict(np.load(inputs_path))
    model = GPTNeoForCausalLM.from_pretrained(hf_export).eval()
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(inputs["token_ids"]).long(),
            attention_mask=torch.from_numpy(inputs["padding_mask"]).long(),
        ).logits
    tokenizer = AutoTokenizer.from_pretrained(hf_export)
    np.savez(
        outputs_path,
        logits=logits.numpy(),
        token_ids=np.array(tokenizer(text)["input_ids"]),
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
