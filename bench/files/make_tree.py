"""Makes (or changes) the tree of small files for bench/files/run.sh.

usage: make_tree.py DIR FILES                       make FILES files in 100 folders
       make_tree.py DIR FILES --change PCT --round N   rewrite PCT% of them
Sizes are 512 B to 16 KiB, random bytes from a fixed seed, so every run has the same
tree. A changed file gets new bytes and a modification time one second later."""
import os
import random
import sys


def path_of(root, i):
    return os.path.join(root, f"d{i % 100:03d}", f"f{i:06d}.bin")


def main():
    root, files = sys.argv[1], int(sys.argv[2])
    rng = random.Random(42)
    if "--change" in sys.argv:
        pct = float(sys.argv[sys.argv.index("--change") + 1])
        rnd = int(sys.argv[sys.argv.index("--round") + 1])
        rng = random.Random(1000 + rnd)
        for i in rng.sample(range(files), max(1, int(files * pct / 100))):
            p = path_of(root, i)
            with open(p, "wb") as f:
                f.write(rng.randbytes(rng.randint(512, 16384)))
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return
    for d in range(100):
        os.makedirs(os.path.join(root, f"d{d:03d}"), exist_ok=True)
    for i in range(files):
        with open(path_of(root, i), "wb") as f:
            f.write(rng.randbytes(rng.randint(512, 16384)))


main()
