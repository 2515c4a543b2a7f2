"""Test material for vision: tiny images made in memory, and a tiny random-weight llama.cpp projector.

The projector is a real ``mmproj`` GGUF of llama.cpp's ``gemma3`` type (a SigLIP-style vision tower, average
pooling, one projection matrix), one transformer block wide 32, weights random: llama.cpp loads it and runs the
whole multimodal path (image decode, preprocessing, encoder, projector, embeddings into the text model), and the
output is meaningless. A 32x32 input in 8x8 patches pooled 2x2 gives 4 image tokens.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

__all__ = ["IMAGE_TOKENS", "gif", "jpeg_header", "png", "webp_header", "write_tiny_mmproj"]

IMAGE_TOKENS = 4  # (32 / 8 / 2) ** 2


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gif(width: int, height: int) -> bytes:
    """A GIF's header, palette and image descriptor (the pixel data is a 1x1 image's): enough for the size check,
    not for a decoder."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\xff\x00\x00\x00\x00\x00"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00\x3b")


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG up to its frame header: enough for the size check, not for a decoder."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0


def webp_header(width: int, height: int) -> bytes:
    """A lossless (VP8L) WebP header carrying the size."""
    bits = (width - 1) | ((height - 1) << 14)
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def write_tiny_mmproj(path: Path, n_embd_text: int = 576, seed: int = 0) -> Path:
    """A gemma3-type projector for a text model of width ``n_embd_text`` (576: SmolLM2-135M)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    width, ffn, heads, image, patch = 32, 64, 2, 32, 8
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_bool("clip.has_vision_encoder", True)
    for key, value in {"image_size": image, "patch_size": patch, "embedding_length": width,
                       "feed_forward_length": ffn, "projection_dim": n_embd_text, "block_count": 1,
                       "attention.head_count": heads, "projector.scale_factor": 2}.items():
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_bool("clip.use_gelu", True)

    def tensor(name: str, *shape: int, ones: bool = False) -> None:
        value = np.ones(shape) if ones else rng.standard_normal(shape) * 0.02
        writer.add_tensor(name, value.astype(np.float32))

    tensor("v.patch_embd.weight", width, 3, patch, patch)
    tensor("v.patch_embd.bias", width)
    tensor("v.position_embd.weight", (image // patch) ** 2, width)
    for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensor(f"v.blk.0.{name}.weight", width, width)
        tensor(f"v.blk.0.{name}.bias", width)
    for name in ("ln1", "ln2"):
        tensor(f"v.blk.0.{name}.weight", width, ones=True)
        tensor(f"v.blk.0.{name}.bias", width)
    tensor("v.blk.0.ffn_up.weight", ffn, width)
    tensor("v.blk.0.ffn_up.bias", ffn)
    tensor("v.blk.0.ffn_down.weight", width, ffn)
    tensor("v.blk.0.ffn_down.bias", width)
    tensor("v.post_ln.weight", width, ones=True)
    tensor("v.post_ln.bias", width)
    tensor("mm.input_projection.weight", width, n_embd_text)
    tensor("mm.soft_emb_norm.weight", width, ones=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
