#!/usr/bin/env python3
"""corpus_select.py CONTROL_FILE CORPUS_DIR MAX_FILES MAX_BYTES

Keeps a committed corpus small. CONTROL_FILE is libFuzzer's merge control
file from `fuzz_X -merge=1 -merge_control_file=CONTROL_FILE EMPTY_DIR
CORPUS_DIR SCRATCH...`: the features each input reaches. Files of CORPUS_DIR
named seed-* or finding-* are always kept; the other inputs (from any
directory) are taken greedily, most new coverage edges first, then most new
features, smaller first on a tie, while they add something and the corpus stays within MAX_FILES files
and MAX_BYTES bytes. The chosen ones are copied into CORPUS_DIR under their
SHA-1 (libFuzzer's naming); files of CORPUS_DIR not chosen are removed.
"""
import hashlib
import os
import shutil
import sys


def parse(path):
    with open(path) as f:
        lines = f.read().split("\n")
    n = int(lines[0])
    files = lines[2:2 + n]
    feats = {}
    for line in lines[2 + n:]:
        parts = line.split()
        # edges (COV) and features (FT) in one set, edges tagged
        if parts and parts[0] in ("FT", "COV"):
            tag = "c" if parts[0] == "COV" else ""
            feats.setdefault(int(parts[1]), set()).update(tag + p for p in parts[2:])
    return files, feats


def gain(new):
    return (sum(1 for f in new if f[0] == "c"), len(new))


def main():
    control, corpus, max_files, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    files, feats = parse(control)
    corpus = os.path.abspath(corpus)
    pinned = [i for i, f in enumerate(files)
              if os.path.dirname(os.path.abspath(f)) == corpus
              and os.path.basename(f).startswith(("seed-", "finding-"))]
    covered = set()
    total = 0
    for i in pinned:
        covered |= feats.get(i, set())
        total += os.path.getsize(files[i])
    chosen = []
    cand = [i for i in range(len(files)) if i not in set(pinned) and i in feats]
    while len(pinned) + len(chosen) < max_files:
        best, bg = None, (0, 0)
        for i in cand:
            g = gain(feats[i] - covered)
            if g > bg or (g == bg and g > (0, 0) and os.path.getsize(files[i]) < os.path.getsize(files[best])):
                best, bg = i, g
        if best is None:
            break
        size = os.path.getsize(files[best])
        cand.remove(best)
        if total + size > max_bytes:
            continue
        chosen.append(best)
        covered |= feats[best]
        total += size
    keep = {os.path.basename(files[i]) for i in pinned}
    for i in chosen:
        with open(files[i], "rb") as f:
            data = f.read()
        name = hashlib.sha1(data).hexdigest()
        keep.add(name)
        dst = os.path.join(corpus, name)
        if os.path.abspath(files[i]) != dst:
            shutil.copyfile(files[i], dst)
    for name in os.listdir(corpus):
        if name not in keep:
            os.remove(os.path.join(corpus, name))
    allf = set().union(*feats.values()) if feats else set()
    ce, cf = gain(covered)
    ae, af = gain(allf)
    print("%s: %d pinned + %d chosen files, %d bytes, %d of %d edges, %d of %d features"
          % (os.path.relpath(corpus), len(pinned), len(chosen), total, ce, ae, cf - ce, af - ae))


if __name__ == "__main__":
    main()
