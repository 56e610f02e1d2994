"""Push new weights into a GGUF in a fraction of a second: rewrite an export's tensor data.

A training run exports its model once with llama.cpp's converter
(:func:`trainers.export.export_gguf`, tens of seconds: it loads transformers and builds the
201,088-token vocabulary). Every later export of the *same architecture* only changes tensor
data, so :func:`write_weights` copies that first file (header, vocabulary, tensor layout
byte for byte) and overwrites each tensor's bytes in place with the new weights, mapped
from Hugging Face names to GGUF ones as the converter maps them for gpt-oss:

- names through the ``gguf`` package's own table (``gguf.get_tensor_name_map``), with
  ``self_attn.sinks`` as ``attn_sinks.weight``;
- expert ``gate_up_proj`` ``[E, hidden, 2*inter]`` transposed and split by interleaved rows
  into ``ffn_gate_exps`` (even) and ``ffn_up_exps`` (odd), its bias likewise;
- expert ``down_proj`` ``[E, inter, hidden]`` transposed.

Each tensor is encoded in the template's type (F32, F16, BF16 or Q8_0, with
``gguf.quants``). ``tests/trainers/test_llamacpp_export.py`` holds the result byte-equal to
a fresh converter export of the same weights.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import re
import shutil
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FAST_TYPES", "gguf_tensors", "read_layout", "read_vocab", "write_weights"]

#: Tensor types :func:`write_weights` can encode (what the converter writes for gpt-oss).
FAST_TYPES = ("F32", "F16", "BF16", "Q8_0")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def _gguf_error(msg: str) -> Exception:
    from trainers.export.gguf import GGUFExportError

    return GGUFExportError(msg)


def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().to("cpu")
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def gguf_tensors(weights: Iterable[tuple[str, Any]], n_layers: int
                 ) -> Iterator[tuple[str, np.ndarray]]:
    """Map gpt-oss ``(HF name, tensor)`` pairs to ``(GGUF name, float32 array)``.

    Args:
        weights: ``model.named_parameters()`` of a ``GptOssForCausalLM`` (names as in its
            checkpoint; a peft wrapper's prefixes must be stripped first).
        n_layers: Decoder layers (for the name table).

    Raises:
        GGUFExportError: a name the gpt-oss table does not know.
    """
    import gguf

    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT_OSS, n_layers)
    for name, tensor in weights:
        arr = _to_numpy(tensor).astype(np.float32, copy=False)
        m = _LAYER.match(name)
        rest = m.group(2) if m else ""
        if rest == "self_attn.sinks":
            yield f"blk.{m.group(1)}.attn_sinks.weight", arr
            continue
        if rest.startswith("mlp.experts."):
            blk, leaf = f"blk.{m.group(1)}", rest[len("mlp.experts."):]
            if leaf == "gate_up_proj":
                t = np.swapaxes(arr, -1, -2)
                yield f"{blk}.ffn_gate_exps.weight", np.ascontiguousarray(t[:, ::2, :])
                yield f"{blk}.ffn_up_exps.weight", np.ascontiguousarray(t[:, 1::2, :])
            elif leaf == "gate_up_proj_bias":
                yield f"{blk}.ffn_gate_exps.bias", np.ascontiguousarray(arr[..., ::2])
                yield f"{blk}.ffn_up_exps.bias", np.ascontiguousarray(arr[..., 1::2])
            elif leaf == "down_proj":
                yield f"{blk}.ffn_down_exps.weight", np.ascontiguousarray(np.swapaxes(arr, -1, -2))
            elif leaf == "down_proj_bias":
                yield f"{blk}.ffn_down_exps.bias", arr
            else:
                raise _gguf_error(f"no GGUF name for expert tensor {name!r} (MXFP4 blocks are "
                                  f"not pushed this way; export with export_gguf).")
            continue
        mapped = table.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise _gguf_error(f"no GGUF name for {name!r} in gguf's gpt-oss table; is this a "
                              f"gpt-oss model's named_parameters() (peft prefixes stripped)?")
        yield mapped, arr


def _encode(arr: np.ndarray, qtype: Any) -> np.ndarray:
    import gguf

    kind = qtype.name
    if kind == "F32":
        return arr.astype(np.float32)
    if kind == "F16":
        return arr.astype(np.float16)
    if kind in ("BF16", "Q8_0"):
        return gguf.quants.quantize(arr, qtype)
    raise _gguf_error(f"the template stores a tensor as {kind}; pushing weights rewrites only "
                      f"{', '.join(FAST_TYPES)} (export an f32/bf16/q8_0 template, and "
                      f"quantize the pushed file with llama-quantize).")


@dataclass(frozen=True)
class _Slot:
    offset: int
    n_bytes: int
    qtype: Any
    shape: tuple[int, ...]  # numpy order (GGUF's dims reversed)


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_STRING, _ARRAY = 8, 9


def read_layout(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, _Slot]]:
    """The scalar metadata and the tensor layout of a GGUF file (cached per file version).

    ``gguf.GGUFReader`` builds a Python object per vocabulary string (minutes for gpt-oss's
    647k tokens and merges on a busy CPU); this walks the header and skips arrays.
    """
    st = os.stat(path)
    return _read_layout(os.path.abspath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _read_layout(path: str, mtime_ns: int, size: int) -> tuple[dict[str, Any], dict[str, _Slot]]:
    import gguf

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            if bytes(buf[:4]) != b"GGUF":
                raise _gguf_error(f"{path} is not a GGUF file (no GGUF magic).")
            version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
            pos = 24

            def string() -> str:
                nonlocal pos
                (n,) = struct.unpack_from("<Q", buf, pos)
                pos += 8 + n
                return bytes(buf[pos - n:pos]).decode("utf-8", "replace")

            def skip(vtype: int) -> Any:
                nonlocal pos
                if vtype == _STRING:
                    return string()
                if vtype == _ARRAY:
                    etype, count = struct.unpack_from("<IQ", buf, pos)
                    pos += 12
                    if etype in _SCALARS:
                        pos += struct.calcsize("<" + _SCALARS[etype]) * count
                    else:
                        for _ in range(count):
                            skip(etype)
                    return None
                fmt = "<" + _SCALARS[vtype]
                (value,) = struct.unpack_from(fmt, buf, pos)
                pos += struct.calcsize(fmt)
                return value

            meta: dict[str, Any] = {"GGUF.version": version}
            for _ in range(n_kv):
                key = string()
                (vtype,) = struct.unpack_from("<I", buf, pos)
                pos += 4
                meta[key] = skip(vtype)
            infos = []
            for _ in range(n_tensors):
                name = string()
                (n_dims,) = struct.unpack_from("<I", buf, pos)
                dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
                qtype, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
                pos += 4 + 8 * n_dims + 12
                infos.append((name, dims, qtype, offset))
            align = int(meta.get("general.alignment") or 32)
            start = (pos + align - 1) // align * align
        finally:
            buf.release()
    layout = {}
    for name, dims, qtype, offset in infos:
        q = gguf.GGMLQuantizationType(qtype)
        block, size = gguf.GGML_QUANT_SIZES[q]
        n_bytes = math.prod(dims) // block * size
        layout[name] = _Slot(start + offset, n_bytes, q, tuple(int(d) for d in reversed(dims)))
    return meta, layout


@functools.lru_cache(maxsize=4)
def _read_vocab(path: str, mtime_ns: int, size: int) -> tuple[list[str], list[int]]:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            _, _, n_kv = struct.unpack_from("<IQQ", buf, 4)
            pos = 24
            found: dict[str, list[Any]] = {}
            for _ in range(n_kv):
                (n,) = struct.unpack_from("<Q", buf, pos)
                key = bytes(buf[pos + 8:pos + 8 + n]).decode("utf-8", "replace")
                pos += 8 + n
                (vtype,) = struct.unpack_from("<I", buf, pos)
                pos += 4
                pos, value = _read_value(buf, pos, vtype,
                                         keep=key in ("tokenizer.ggml.tokens",
                                                      "tokenizer.ggml.token_type"))
                if value is not None:
                    found[key] = value
        finally:
            buf.release()
    if "tokenizer.ggml.tokens" not in found:
        raise _gguf_error(f"{path} holds no tokenizer.ggml.tokens.")
    tokens = found["tokenizer.ggml.tokens"]
    return tokens, found.get("tokenizer.ggml.token_type") or [1] * len(tokens)


def _read_value(buf: memoryview, pos: int, vtype: int, *, keep: bool) -> tuple[int, Any]:
    if vtype == _STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        text = bytes(buf[pos + 8:pos + 8 + n]).decode("utf-8", "replace") if keep else None
        return pos + 8 + n, text
    if vtype == _ARRAY:
        etype, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if etype in _SCALARS:
            fmt = "<" + _SCALARS[etype]
            width = struct.calcsize(fmt)
            values = (list(np.frombuffer(buf[pos:pos + width * count], dtype=np.dtype(fmt)))
                      if keep else None)
            return pos + width * count, values
        out = [] if keep else None
        for _ in range(count):
            pos, v = _read_value(buf, pos, etype, keep=keep)
            if out is not None:
                out.append(v)
        return pos, out
    fmt = "<" + _SCALARS[vtype]
    (value,) = struct.unpack_from(fmt, buf, pos)
    return pos + struct.calcsize(fmt), value if keep else None


def read_vocab(path: str | os.PathLike[str]) -> tuple[list[str], list[int]]:
    """A GGUF's ``tokenizer.ggml.tokens`` and ``tokenizer.ggml.token_type`` (cached per file
    version)."""
    st = os.stat(path)
    return _read_vocab(os.path.abspath(path), st.st_mtime_ns, st.st_size)


def write_weights(template: str | os.PathLike[str], out: str | os.PathLike[str],
                  weights: Iterable[tuple[str, Any]]) -> Path:
    """Write ``out``: ``template`` with every tensor's data replaced from ``weights``.

    Args:
        template: A GGUF of the same architecture, written by :func:`export_gguf`.
        out: The file to write (replaced atomically).
        weights: ``(HF name, tensor)`` pairs covering every tensor of the template.

    Returns:
        ``out`` as a path.

    Raises:
        GGUFExportError: a tensor missing, unknown, of another shape, or of a type this
            fast path does not encode.
    """
    template, out = Path(template), Path(out)
    meta, layout = read_layout(template)
    if meta.get("general.architecture") != "gpt-oss":
        raise _gguf_error(f"{template} holds a {meta.get('general.architecture')!r} model; "
                          f"pushing weights supports gpt-oss GGUFs only.")
    n_layers = int(meta["gpt-oss.block_count"])
    tmp = out.with_name(out.name + ".part")
    shutil.copyfile(template, tmp)
    try:
        mem = np.memmap(tmp, dtype=np.uint8, mode="r+")
        seen: set[str] = set()
        for name, arr in gguf_tensors(weights, n_layers):
            t = layout.get(name)
            if t is None:
                raise _gguf_error(f"{name} is not a tensor of {template}: is it an export of "
                                  f"the same architecture?")
            if arr.shape != t.shape:
                raise _gguf_error(f"{name} has shape {arr.shape}, {template} holds {t.shape}: "
                                  f"the template is another architecture (re-export it).")
            data = _encode(arr, t.qtype).view(np.uint8).reshape(-1)
            if data.size != t.n_bytes:
                raise _gguf_error(f"{name}: {data.size} bytes encoded, the template holds "
                                  f"{t.n_bytes}.")
            mem[t.offset:t.offset + t.n_bytes] = data
            seen.add(name)
        missing = sorted(set(layout) - seen)
        if missing:
            raise _gguf_error(f"no new weights for {len(missing)} tensor(s) of {template} "
                              f"(first: {missing[:3]}); pass every named parameter.")
        mem.flush()
        del mem
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
