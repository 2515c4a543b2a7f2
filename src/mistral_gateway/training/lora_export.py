"""A trained LoRA adapter as a llama.cpp GGUF adapter (what ``CommonParams.lora_adapters`` loads).

Layout, as llama.cpp's own converter writes it (re-implemented here): ``general.type = "adapter"``,
``adapter.type = "lora"``, ``adapter.lora.alpha``, the base's ``general.architecture``; for each adapted base tensor
``X.weight`` two tensors ``X.weight.lora_a`` (peft's A, torch shape (rank, in)) and ``X.weight.lora_b`` (B, (out,
rank)), neither transposed. The GGUF names come from the gguf package's HF-to-GGUF name map and are checked against
the base GGUF's own tensors and shapes, so an adapter that llama.cpp would refuse is never written.

One subtlety: for the ``llama`` architecture llama.cpp stores attn_q/attn_k rows permuted (rotary pairs
interleaved) and transformers un-permutes them when it loads the GGUF; the adapter must be in llama.cpp's order, so
B of q_proj/k_proj gets the same row permutation (it acts on output rows only, i.e. on B).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BaseLayout", "adapter_tensors", "permute_rows", "read_layout", "write_adapter"]

_PERMUTED_ARCHS = frozenset({"llama"})


class BaseLayout:
    """What the adapter must match in the base GGUF: architecture, heads, and each tensor's ggml shape (ne)."""

    def __init__(self, arch: str, n_head: int, n_head_kv: int, n_blocks: int, shapes: Mapping[str, tuple[int, ...]]):
        self.arch, self.n_head, self.n_head_kv, self.n_blocks = arch, n_head, n_head_kv, n_blocks
        self.shapes = dict(shapes)


def read_layout(base_gguf: Path) -> BaseLayout:
    import gguf

    reader = gguf.GGUFReader(base_gguf)
    fields = reader.fields
    arch = str(fields["general.architecture"].contents())
    n_head = int(fields[f"{arch}.attention.head_count"].contents())
    kv_field = fields.get(f"{arch}.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    n_blocks = int(fields[f"{arch}.block_count"].contents())
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    return BaseLayout(arch, n_head, n_head_kv, n_blocks, shapes)


def permute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order: within each head, the two rotary halves interleaved."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def adapter_tensors(state: Mapping[str, Any], layout: BaseLayout) -> dict[str, np.ndarray]:
    """peft's state dict (``...<module>.lora_A.weight`` / ``lora_B.weight``) as GGUF tensors, named and shaped for
    the base. Raises ValueError for a module the base has no tensor for, or a shape it would refuse."""
    import gguf

    arch = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(layout.arch)
    if arch is None:
        raise ValueError(f"unknown GGUF architecture {layout.arch!r}")
    names = gguf.get_tensor_name_map(arch, layout.n_blocks)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        part = "lora_a" if ".lora_A." in key else "lora_b" if ".lora_B." in key else None
        if part is None:
            raise ValueError(f"not a LoRA tensor: {key}")
        module = key.split(".lora_")[0].removeprefix("base_model.model.")
        base = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if base is None or base not in layout.shapes:
            raise ValueError(f"the base GGUF has no tensor for {module}")
        array = np.ascontiguousarray(_numpy(value), dtype=np.float32)
        if part == "lora_b" and layout.arch in _PERMUTED_ARCHS:
            if module.endswith("q_proj"):
                array = permute_rows(array, layout.n_head)
            elif module.endswith("k_proj"):
                array = permute_rows(array, layout.n_head_kv)
        out[f"{base}.{part}"] = array
    _check_shapes(out, layout)
    return out


def write_adapter(path: Path, tensors: Mapping[str, np.ndarray], layout: BaseLayout, alpha: float) -> None:
    """Writes the adapter atomically (a temporary file renamed into place)."""
    import gguf

    scratch = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(scratch, layout.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(scratch, path)


def _check_shapes(tensors: Mapping[str, np.ndarray], layout: BaseLayout) -> None:
    # llama.cpp's own checks on load: a is ne [in, rank], b is ne [rank, out], the base is ne [in, out]
    for name, a in tensors.items():
        if not name.endswith(".lora_a"):
            continue
        base = name.removesuffix(".lora_a")
        b = tensors.get(base + ".lora_b")
        if b is None:
            raise ValueError(f"{base}: lora_a without lora_b")
        n_in, n_out = layout.shapes[base][:2]
        if a.shape[1] != n_in or b.shape[0] != n_out or a.shape[0] != b.shape[1]:
            raise ValueError(f"{base}: adapter shapes {a.shape}/{b.shape} do not fit the base's {(n_out, n_in)}")


def _numpy(value: Any) -> np.ndarray:
    return value.detach().to("cpu").float().numpy() if hasattr(value, "detach") else np.asarray(value)
