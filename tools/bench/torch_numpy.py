#!/usr/bin/env python3
"""torch_numpy.py - the torch and numpy baselines of ckpt-bench.

Reads the tensors ckpt-bench wrote for its raw baseline (RAW: the bytes of
every tensor, one after the other; INDEX: a JSON list of {name, dtype,
shape, offset, nbytes}) and times, on exactly those tensors:

  torch.save(dict, file)  and  torch.load(file, map_location="cpu", weights_only=True)
  np.savez(file, **dict)  and  np.load(file) with every array read

Durability: neither torch.save nor np.savez fsyncs. ckpt's default
(CKPT_DURABLE_FULL) does, so the save times here include flush + os.fsync
of the file (the *_nofsync_s figures are the same saves up to the fsync).
Loads are timed with the file in the page cache (one untimed load first,
which also checks every tensor against the original). Times are the best
of --reps runs. The last line printed is one JSON object.

usage: torch_numpy.py --raw FILE --index FILE.json --dir DIR [--reps N] [--no-torch]
"""
import argparse
import json
import os
import sys
import time


def timed_save(path, save):
    """(seconds including fsync, seconds before the fsync) for save(file)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.sync()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        save(f)
        f.flush()
        t1 = time.perf_counter()
        os.fsync(f.fileno())
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0


def check(loaded, arrays, what):
    import numpy as np

    if sorted(loaded) != sorted(arrays):
        sys.exit("torch_numpy.py: %s returned other tensor names" % what)
    for name, a in arrays.items():
        b = loaded[name]
        b = b.numpy() if hasattr(b, "numpy") else b
        if b.shape != a.shape or b.dtype != a.dtype or not np.array_equal(a, b):
            sys.exit("torch_numpy.py: %s returned different bytes for %s" % (what, name))


def main():
    ap = argparse.ArgumentParser(description="torch/numpy baselines for ckpt-bench")
    ap.add_argument("--raw", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()

    import numpy as np

    torch = None
    if not a.no_torch:
        try:
            import torch
        except ImportError:
            torch = None

    with open(a.index) as f:
        index = json.load(f)
    arrays = {}
    total = 0
    with open(a.raw, "rb") as f:
        for t in index:
            dt = np.dtype(t["dtype"])
            count = t["nbytes"] // dt.itemsize
            f.seek(t["offset"])
            arr = np.fromfile(f, dtype=dt, count=count)
            if arr.nbytes != t["nbytes"]:
                sys.exit("torch_numpy.py: %s is shorter than its index says" % a.raw)
            arrays[t["name"]] = arr.reshape(t["shape"])
            total += t["nbytes"]

    out = {
        "bytes": total,
        "reps": a.reps,
        "python": sys.version.split()[0],
        "numpy_version": np.__version__,
        "torch_version": torch.__version__ if torch else None,
        "durability": "saves include flush + os.fsync (torch.save and np.savez do not fsync); "
        "*_nofsync_s stop before the fsync",
        "timing": "best of %d" % a.reps,
    }
    best = {}

    def keep(key, value):
        best[key] = min(best.get(key, value), value)

    pt = os.path.join(a.dir, "state.pt")
    npz = os.path.join(a.dir, "state.npz")
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()} if torch else None
    try:
        for rep in range(a.reps):
            if torch:
                full, nofsync = timed_save(pt, lambda f: torch.save(tensors, f))
                keep("torch_save_s", full)
                keep("torch_save_nofsync_s", nofsync)
                if rep == 0:
                    check(torch.load(pt, map_location="cpu", weights_only=True), arrays,
                          "torch.load")
                t0 = time.perf_counter()
                loaded = torch.load(pt, map_location="cpu", weights_only=True)
                keep("torch_load_s", time.perf_counter() - t0)
                del loaded
            full, nofsync = timed_save(npz, lambda f: np.savez(f, **arrays))
            keep("numpy_save_s", full)
            keep("numpy_save_nofsync_s", nofsync)
            if rep == 0:
                with np.load(npz) as z:
                    check({k: z[k] for k in z.files}, arrays, "np.load")
            t0 = time.perf_counter()
            with np.load(npz) as z:
                loaded = {k: z[k] for k in z.files}
            keep("numpy_load_s", time.perf_counter() - t0)
            del loaded
    finally:
        for p in (pt, npz):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    for key in ("torch_save_s", "torch_save_nofsync_s", "torch_load_s", "numpy_save_s",
                "numpy_save_nofsync_s", "numpy_load_s"):
        out[key] = best.get(key)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
