"""Three tokenizer families the judge and the prompts must work on, and tiny random Llamas that use them.

- ``smollm2``: SmolLM2's real tokenizer (byte-level BPE, "Score: 5" is ['Score', ':', 'Ġ', '5'], ChatML
  template that writes <|im_start|> itself, tokenizer adds nothing), read from the shipped GGUF.
- ``sentencepiece``: a Llama-2-style tokenizer built here (Metaspace ▁ prefix, digits split one by one so
  "5" alone is ['▁', '5'], byte fallback, bos added by the tokenizer *and* written by the chat template,
  no pad token).
- ``base``: a Llama-3-base-style byte-level tokenizer that adds bos and has no chat template.

The models have random weights: they test plumbing (tokenisation, boundaries, vLLM loading), not quality.
head_dim is 32 (vLLM's CPU attention rejects 16).
"""

from __future__ import annotations

import json
from pathlib import Path

from udfs.prompts import CONF_DIR

FAMILIES = ("smollm2", "sentencepiece", "base")

SP_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}<<SYS>>\n{{ m['content'] }}\n<</SYS>>\n\n"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


def _corpus() -> list[str]:
    prompts = [p.read_text() for p in sorted((CONF_DIR / "prompts").glob("*.txt"))]
    return (
        prompts
        + [
            "Score: 1\nScore: 2\nScore: 3\nScore: 4\nScore: 5\nScore:5",
            "The quick brown fox jumps over the lazy dog. How do I sort a list in Python? Use sorted(xs).",
            "Instruction: explain recursion. Response: a function that calls itself on a smaller input.",
        ]
        * 3
    )


def sentencepiece_tokenizer():
    """Llama-2-like: BPE over ▁-prefixed pieces, single digits, byte fallback (<0x00>..<0xFF> in the vocab)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    # Byte fallback needs the 256 byte tokens as ordinary vocabulary entries, which the trainer cannot add:
    # append them to the trained model and rebuild it with byte_fallback on.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", chat_template=SP_CHAT_TEMPLATE
    )


def base_tokenizer():
    """Llama-3-base-like: byte-level BPE, adds <|begin_of_text|>, no chat template, no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[bos, eos],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)


def smollm2_tokenizer():
    """SmolLM2's real tokenizer, straight from the GGUF (no model conversion needed)."""
    from transformers import AutoTokenizer

    from training.pretrained import smollm2_gguf

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def build_tokenizer(family: str):
    return {"smollm2": smollm2_tokenizer, "sentencepiece": sentencepiece_tokenizer, "base": base_tokenizer}[family]()


def build_tiny_model(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """A random-weight 2-layer Llama with ``family``'s tokenizer, saved as a Hugging Face directory."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(family)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
