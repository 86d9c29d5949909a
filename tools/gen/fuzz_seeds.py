#!/usr/bin/env python3
"""Writes the fuzz harnesses' seed corpora (tests/fuzz/corpus/<harness>/): small valid files of each
kind plus hand-made bad ones, so libFuzzer starts from the real grammar. Run from the repository root:
    python3 tools/gen/fuzz_seeds.py
Needs only the standard library; the bundled model's config.json and tokenizer.json are copied."""
import json, os, struct

root = os.path.join("tests", "fuzz", "corpus")

def put(harness, name, data):
    d = os.path.join(root, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# --- safetensors: header + data, tensors of every kind of dtype the reader knows
def st(tensors, metadata=None, header_override=None, extra=b""):
    hdr, data = {}, b""
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dtype, shape, payload in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    h = header_override if header_override is not None else json.dumps(hdr, separators=(",", ":"))
    h = h.encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data + extra

f32 = struct.pack("<6f", 1, -2, 0.5, 3, 1e-3, -7)
put("fuzz_safetensors", "valid_mixed", st([
    ("a.weight", "F32", [2, 3], f32),
    ("b.weight", "BF16", [4], struct.pack("<4H", 0x3F80, 0xC000, 0x7F80, 0x0001)),
    ("c.weight", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001)),
    ("d", "U8", [3], b"\x01\x02\x03"),
    ("e", "F8_E4M3", [2], b"\x38\xff"),
    ("f", "I32", [1], struct.pack("<i", -5)),
    ("g", "F4", [4], b"\x21\x43"),
    ("h", "F8_E8M0", [2], b"\x7f\x80"),
], metadata={"format": "pt", "mxq.format": "mxfp4"}))
put("fuzz_safetensors", "valid_empty_tensor", st([("z", "F32", [0, 4], b"")]))
put("fuzz_safetensors", "valid_scalar", st([("s", "F64", [], struct.pack("<d", 2.5))]))
put("fuzz_safetensors", "bad_reversed", st([], header_override='{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', extra=b"\0" * 4))
put("fuzz_safetensors", "bad_overlap", st([], header_override='{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}', extra=b"\0" * 8))
put("fuzz_safetensors", "bad_huge_shape", st([], header_override='{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}', extra=b"\0" * 4))
put("fuzz_safetensors", "bad_duplicate", st([], header_override='{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', extra=b"\0" * 4))
put("fuzz_safetensors", "bad_truncated", st([("a", "F32", [2, 3], f32)])[:-5])
put("fuzz_safetensors", "bad_size_field", struct.pack("<Q", 2**63) + b"{}")

# --- mxq packed checkpoints (include/mxq/io/packed_io.hpp's layout)
def packed(base, rows, cols, row_bytes, blocks, scale_dtype, scale_bytes, zeros=None, tensor_scale=None):
    t = [(base + ".weight_blocks", "U8", [rows, row_bytes], bytes((17 * i) & 0xFF for i in range(rows * row_bytes))),
         (base + ".weight_scales", scale_dtype, [rows, blocks], scale_bytes),
         (base + ".weight_shape", "I64", [2], struct.pack("<2q", rows, cols))]
    if zeros is not None:
        t.append((base + ".weight_zeros", "U8", [rows, blocks], zeros))
    if tensor_scale is not None:
        t.append((base + ".weight_tensor_scale", "F32", [1], struct.pack("<f", tensor_scale)))
    return t
put("fuzz_packed", "mxfp4", st(packed("model.layers.0.mlp.up_proj", 2, 64, 32, 2, "U8", b"\x7f\x80\x7e\x81"),
                               metadata={"mxq.format": "mxfp4"}))
put("fuzz_packed", "nvfp4", st(packed("l", 2, 32, 16, 2, "U8", b"\x38\x40\x30\x48", tensor_scale=0.25),
                               metadata={"mxq.format.l": "nvfp4"}))
put("fuzz_packed", "int4_g128", st(packed("l", 1, 256, 128, 2, "F32", struct.pack("<2f", 0.1, 0.2), zeros=b"\x08\x07"),
                                   metadata={"mxq.format": "int4_g128"}))
put("fuzz_packed", "mxint8_two", st(packed("a", 1, 32, 32, 1, "U8", b"\x7f") + packed("b", 3, 33, 64, 2, "U8", b"\x7f" * 6),
                                    metadata={"mxq.format": "mxint8"}))
put("fuzz_packed", "bad_shape", st(packed("l", 2, 64, 32, 2, "U8", b"\x7f\x80\x7e\x81")[:2] +
                                   [("l.weight_shape", "I64", [2], struct.pack("<2q", 2**40, 2**40))], metadata={"mxq.format": "mxfp4"}))
put("fuzz_packed", "bad_format", st(packed("l", 2, 64, 32, 2, "U8", b"\x7f\x80\x7e\x81"), metadata={"mxq.format": "mxfp5"}))

# --- index
idx = {"metadata": {"total_size": 64}, "weight_map": {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors"}}
put("fuzz_index", "valid", json.dumps(idx))
put("fuzz_index", "bad_escape", json.dumps({"weight_map": {"a": "../../etc/passwd", "b": "/abs", "c": "sub/dir.safetensors"}}))
put("fuzz_index", "bad_types", '{"weight_map":{"a":3,"b":null}}')
put("fuzz_index", "bad_deep", "[" * 200 + "]" * 200)

# --- config.json: the bundled model's plus the published shapes of each supported architecture
put("fuzz_config", "bundled", open(os.path.join("examples", "models", "code-llama", "config.json"), "rb").read())
put("fuzz_config", "llama31_8b", json.dumps({"hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192,
                     "rope_type": "llama3"}, "rope_theta": 500000.0, "tie_word_embeddings": False, "vocab_size": 128256}))
put("fuzz_config", "qwen3_8b", json.dumps({"head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 12288,
    "model_type": "qwen3", "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None, "vocab_size": 151936}))
put("fuzz_config", "mistral", json.dumps({"hidden_size": 4096, "intermediate_size": 14336, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rope_theta": 1000000.0,
    "sliding_window": 4096, "vocab_size": 32768}))
put("fuzz_config", "qwen2_linear_rope", json.dumps({"hidden_size": 3584, "intermediate_size": 18944, "model_type": "qwen2",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rope_scaling": {"type": "linear", "factor": 2.0},
    "vocab_size": 152064, "layer_types": ["full_attention"] * 28}))
put("fuzz_config", "bad_types", '{"model_type":"llama","hidden_size":"4096","num_attention_heads":-1,"rope_scaling":[1,2]}')
put("fuzz_config", "bad_zero", '{"model_type":"llama","hidden_size":0,"num_attention_heads":0,"num_key_value_heads":0,"intermediate_size":0,"num_hidden_layers":0,"vocab_size":0}')

# --- tokenizer.json (JSON, a NUL byte, then text to encode)
bundled_tok = open(os.path.join("examples", "models", "code-llama", "tokenizer.json"), "rb").read()
put("fuzz_tokenizer", "bundled_with_text", bundled_tok + b"\0def f(x):\n    return x + 1  # caf\xc3\xa9 \xf0\x9f\x99\x82\n")
tiny_bpe = {"version": "1.0", "added_tokens": [{"id": 5, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}],
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": None, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4, "<s>": 5},
                      "merges": ["a b", "\u0120 ab"]}}
put("fuzz_tokenizer", "tiny_bytelevel", json.dumps(tiny_bpe).encode() + b"\0ab ab<s>ba")
sp = {"version": "1.0", "added_tokens": [],
      "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                         {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
      "pre_tokenizer": None, "post_processor": None,
      "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                   {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
      "model": {"type": "BPE", "byte_fallback": True, "fuse_unk": True, "unk_token": "<unk>",
                "vocab": dict([("<unk>", 0), ("\u2581", 1), ("h", 2), ("i", 3), ("hi", 4), ("\u2581hi", 5)] +
                              [("<0x%02X>" % b, 6 + b) for b in range(256)]),
                "merges": [["h", "i"], ["\u2581", "hi"]]}}
put("fuzz_tokenizer", "tiny_sentencepiece", json.dumps(sp).encode() + b"\0hi hi \xe2\x82\xac")
put("fuzz_tokenizer", "tiny_metaspace_nfc", json.dumps(dict(sp, normalizer={"type": "NFC"},
    pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True})).encode() + b"\0e\xcc\x81 hi")
put("fuzz_tokenizer", "bad_merge", json.dumps(dict(tiny_bpe, model=dict(tiny_bpe["model"], merges=["a c", 3]))).encode() + b"\0a")

# --- .npy
def npy(descr, shape, payload, fortran=False, version=1):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (descr, "True" if fortran else "False",
                                                                  "".join("%d," % s for s in shape) if len(shape) != 1 else "%d," % shape[0])
    lenb = 2 if version == 1 else 4
    pad = (64 - (10 + (lenb - 2) + len(h) + 1) % 64) % 64
    h = h + " " * pad + "\n"
    return b"\x93NUMPY" + bytes([version, 0]) + (struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))) + h.encode() + payload
put("fuzz_npy", "f32_2x3", npy("<f4", [2, 3], f32))
put("fuzz_npy", "f16_v2", npy("<f2", [4], struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001), version=2))
put("fuzz_npy", "u8", npy("|u1", [3], b"\x01\x02\x03"))
put("fuzz_npy", "i32_scalar", npy("<i4", [], struct.pack("<i", 7)))
put("fuzz_npy", "bad_fortran", npy("<f4", [2, 3], f32, fortran=True))
put("fuzz_npy", "bad_big_endian", npy(">f4", [6], f32))
put("fuzz_npy", "bad_truncated", npy("<f4", [2, 3], f32)[:-3])
put("fuzz_npy", "bad_huge", npy("<f4", [2**40, 2**40], b""))
deep = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': " + "(" * 64 + ")" * 64 + ", }\n"
put("fuzz_npy", "bad_nested", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(deep)) + deep.encode() + b"\0" * 4)
print("written", root)
