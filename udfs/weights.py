"""Whether a model directory's weight files are whole, checked before a model is loaded for serving
(``udfs.engine.get_engine``) or training (``training.train.load_model``).

A copy cut short (a full disk, a killed ``cp``, a one-byte placeholder left by a failed download) otherwise
fails deep inside safetensors or vLLM with ``HeaderTooSmall`` or ``MetadataIncompleteBuffer`` and no file
name. The checks read headers only: a safetensors file's size must be what its header says, a sharded
model's index must name files that exist, a ``.bin`` must be a whole zip archive (``torch.save``'s format).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path


class BrokenWeights(ValueError):
    """A weight file of a model directory is missing, truncated or not a weight file."""


def check_weights(model_dir: str | Path) -> None:
    """Raise ``BrokenWeights`` naming the first weight file of ``model_dir`` that is not whole."""
    path = Path(model_dir)
    for index in sorted(path.glob("*.index.json")):
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        for shard in sorted(shards):
            if not (path / shard).is_file():
                raise BrokenWeights(f"{path / shard}: named by {index.name} but missing: copy the model again")
    for file in sorted(path.glob("*.safetensors")):
        _check_safetensors(file)
    for file in sorted(path.glob("*.bin")):
        if not zipfile.is_zipfile(file):
            raise BrokenWeights(f"{file}: not a whole torch weights file ({file.stat().st_size} bytes): copy it again")


def _check_safetensors(file: Path) -> None:
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise BrokenWeights(f"{file}: truncated safetensors file ({size} bytes, no header): copy it again")
        (header_len,) = struct.unpack("<Q", head)
        if 8 + header_len > size:
            raise BrokenWeights(
                f"{file}: truncated safetensors file ({size} bytes; its header alone needs {8 + header_len}): "
                "copy it again"
            )
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise BrokenWeights(f"{file}: not a safetensors file (its header is not JSON: {e})") from e
    data = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size != 8 + header_len + data:
        raise BrokenWeights(
            f"{file}: truncated safetensors file ({size} bytes; its header says {8 + header_len + data}): copy it again"
        )
