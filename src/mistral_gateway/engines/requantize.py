"""A GGUF rewritten with its weights in another quantization type, reproducibly (the derived bundled assets).

Why: llama.cpp has batched CPU kernels (llamafile sgemm, repacked GEMMs) for Q8_0 and Q4_0 but not for Q4_1, so a
Q4_1 model costs nearly as much per sequence at 8 sequences per step as at one (README "Performance"). Tensors of the
``convert`` types are dequantized and quantized again to ``target`` with ``gguf``'s numpy quantizers; every other
tensor is copied byte for byte, and every metadata key is copied except ``general.file_type``, which names the new
type. Same input and same ``gguf`` version give the same bytes (elementwise IEEE arithmetic, no threads), which is
what lets the asset table pin the result's sha256.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FILE_TYPES", "GGUF_VERSION", "requantize_gguf"]

# The gguf release whose quantizers produced the pinned checksums (a different one may round differently).
GGUF_VERSION = "0.19.0"

# llama.cpp's LLAMA_FTYPE_MOSTLY_* for the target types (general.file_type)
FILE_TYPES = {"Q8_0": 7, "Q4_0": 2}


def requantize_gguf(source: Path, out: Path, target: str, convert: tuple[str, ...] = ("Q4_1",),
                    deltas: Mapping[str, Any] | None = None) -> None:
    """Write ``out``: ``source`` with its ``convert``-typed tensors requantized to ``target`` (a key of
    ``FILE_TYPES``). ``deltas`` (tensor name -> float32 array in numpy order) are added to those tensors, which are
    then stored as ``target`` whatever their type (a LoRA adapter merged into its base, ``training.lora_merge``).
    Raises ValueError for a file this cannot convert (not a GGUF, a type gguf cannot read)."""
    import gguf  # the `local` extra; imported here so the gateway imports without it
    from gguf import GGMLQuantizationType, GGUFValueType

    if target not in FILE_TYPES:
        raise ValueError(f"unsupported target type {target!r}; supported: {', '.join(FILE_TYPES)}")
    to = GGMLQuantizationType[target]
    sources = {GGMLQuantizationType[name] for name in convert}
    reader = gguf.GGUFReader(source)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch is None:
        raise ValueError(f"{source}: no {gguf.Keys.General.ARCHITECTURE} key: not a model GGUF")
    writer = gguf.GGUFWriter(out, arch=arch.contents())
    writer.data_alignment = reader.alignment  # the source's general.alignment, if it sets one, is copied below
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        kind = field.types[0]
        relabel = field.name == gguf.Keys.General.FILE_TYPE and bool(convert)  # a merge alone keeps the label
        value: Any = FILE_TYPES[target] if relabel else field.contents()
        writer.add_key_value(field.name, value, kind, sub_type=field.types[-1] if kind == GGUFValueType.ARRAY else None)
    tensors = []
    for tensor in reader.tensors:
        data, kind = tensor.data, tensor.tensor_type
        delta = (deltas or {}).get(tensor.name)
        if delta is not None:
            data, kind = gguf.quants.quantize(gguf.quants.dequantize(data, kind) + delta, to), to
        elif kind in sources:
            data, kind = gguf.quants.quantize(gguf.quants.dequantize(data, kind), to), to
        writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, kind)
        tensors.append(data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in tensors:
        writer.write_tensor_data(data)
    writer.close()
