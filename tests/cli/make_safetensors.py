#!/usr/bin/env python3
"""An independent safetensors writer (standard library only) for the CLI
tests: writes a valid file, or one of many malformed variants, and compares
the tensors of two files byte for byte."""
import json
import struct
import sys


def tensors():
    # name -> (dtype, shape, bytes); deterministic content
    out = {}
    f32 = struct.pack("<%df" % 600, *[((i * 37) % 101 - 50) / 7.0 for i in range(600)])
    out["encoder.weight"] = ("F32", [20, 30], f32)
    out["encoder.bias"] = ("F32", [30], struct.pack("<30f", *[-0.0] * 15 + [float("inf")] * 15))
    out["step"] = ("I64", [], struct.pack("<q", 123456789))
    out["mask"] = ("BOOL", [2, 3], bytes([1, 0, 1, 1, 0, 0]))
    out["half"] = ("BF16", [4], bytes(range(8)))
    out["f16"] = ("F16", [2, 2], bytes(range(8, 16)))
    out["bytes"] = ("U8", [5], b"\x00\xff\x10\x20\x30")
    out["empty"] = ("F64", [0, 3], b"")
    return out


def build(ts, meta=None, pad=True, order=None):
    header = {}
    if meta is not None:
        header["__metadata__"] = meta
    off = 0
    data = b""
    for name in order or ts:
        dt, shape, b = ts[name]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], raw[base + b:base + e])
    return out, header.get("__metadata__", {})


def bad_variants():
    ts = tensors()
    good = build(ts, {"format": "pt"})
    (n,) = struct.unpack("<Q", good[:8])
    hdr = good[8:8 + n]
    data = good[8 + n:]
    v = {}
    v["huge_header_len"] = struct.pack("<Q", 1 << 40) + good[8:]
    v["header_past_eof"] = struct.pack("<Q", len(good)) + good[8:]
    v["not_json"] = struct.pack("<Q", 8) + b"{nope!!}" + data
    v["truncated_file"] = good[:-3]
    v["trailing_bytes"] = good + b"xx"
    v["too_short"] = b"\x01\x02"
    def with_header(obj):
        h = json.dumps(obj).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        return struct.pack("<Q", len(h)) + h + data
    base = json.loads(hdr)
    import copy
    b = copy.deepcopy(base); b["encoder.bias"]["dtype"] = "F8_E4M3"; v["unknown_dtype"] = with_header(b)
    b = copy.deepcopy(base); b["encoder.weight"]["shape"] = [20, 31]; v["shape_mismatch"] = with_header(b)
    b = copy.deepcopy(base); b["encoder.weight"]["shape"] = [4294967296, 4294967296, 16]; v["shape_overflow"] = with_header(b)
    b = copy.deepcopy(base); b["mask"]["data_offsets"] = [b["mask"]["data_offsets"][0] + 1, b["mask"]["data_offsets"][1] + 1]; v["offsets_gap"] = with_header(b)
    b = copy.deepcopy(base); e = b["encoder.bias"]["data_offsets"]; b["encoder.bias"]["data_offsets"] = [e[0] - 8, e[1] - 8]; v["overlap"] = with_header(b)
    b = copy.deepcopy(base); b["bytes"]["data_offsets"] = [len(data), len(data) + 5]; v["offsets_out_of_bounds"] = with_header(b)
    h = hdr.decode().rstrip().replace('"step":', '"mask":', 1)
    v["duplicate_name"] = struct.pack("<Q", len(h)) + h.encode() + data
    b = copy.deepcopy(base); b["__metadata__"] = {"k": 5}; v["metadata_not_string"] = with_header(b)
    b = copy.deepcopy(base); b["__metadata__"] = {"ckpt.kind.encoder.weight": "weird"}; v["kind_unknown"] = with_header(b)
    b = copy.deepcopy(base); b["__metadata__"] = {"ckpt.kind.nosuch": "model"}; v["kind_no_tensor"] = with_header(b)
    return v


def main():
    cmd = sys.argv[1]
    if cmd == "good":
        with open(sys.argv[2], "wb") as f:
            f.write(build(tensors(), {"format": "pt", "source": "independent writer"}))
    elif cmd == "small":
        # two tensors whose content depends on a seed: tells files apart
        seed = int(sys.argv[3])
        ts = {"w": ("F32", [3], struct.pack("<3f", seed, seed + 0.5, -seed)),
              "n": ("I64", [], struct.pack("<q", seed * 1000))}
        with open(sys.argv[2], "wb") as f:
            f.write(build(ts, {"format": "pt"}))
    elif cmd == "bad":
        import os
        for name, blob in bad_variants().items():
            with open(os.path.join(sys.argv[2], name + ".safetensors"), "wb") as f:
                f.write(blob)
    elif cmd == "compare":
        a, _ = read(sys.argv[2])
        b, meta = read(sys.argv[3])
        if a != b:
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    print("differs:", k, a.get(k, ("missing",))[:2], b.get(k, ("missing",))[:2])
            sys.exit(1)
        for key in ("ckpt.run", "ckpt.epoch", "ckpt.step"):
            if key not in meta:
                print("metadata lacks", key)
                sys.exit(1)
        print("identical: %d tensors; metadata %s" % (len(a), json.dumps({k: meta[k] for k in ("ckpt.run", "ckpt.epoch", "ckpt.step")})))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
