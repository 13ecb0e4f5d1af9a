"""Makes (or changes) the tree for bench/backup/run.sh: bench/files' layout (FILES files in
100 folders) at backup scale, about 100 KB a file on average (2 GB for 20,000 files):
even-numbered files are random bytes (incompressible), odd-numbered ones text.

usage: make_tree.py DIR FILES                        make the tree
       make_tree.py DIR FILES --change PCT --round N  rewrite PCT% of the files
Everything comes from fixed seeds, so every run has the same tree."""
import os
import random
import sys

MEAN = 100 * 1024


def path_of(root, i):
    return os.path.join(root, f"d{i % 100:03d}", f"f{i:06d}.{'bin' if i % 2 == 0 else 'txt'}")


def text_pool(rng):
    words = ("sync server backup chunk pack index version restore prune device table row "
             "cursor feed push pull merge conflict policy token site file folder").split()
    lines = []
    for n in range(200000):
        lines.append(f"{n:07d} " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))))
    return ("\n".join(lines) + "\n").encode()


def content(rng, i, pool):
    size = int(rng.expovariate(1 / MEAN)) + 512
    size = min(size, 8 * 1024 * 1024)
    if i % 2 == 0:
        return rng.randbytes(size)
    start = rng.randrange(0, len(pool) - size - 1) if size < len(pool) else 0
    return (b"file %d\n" % i) + (pool[start:start + size] * (1 + size // len(pool)))[:size]


def main():
    root, files = sys.argv[1], int(sys.argv[2])
    pool = text_pool(random.Random(7))
    if "--change" in sys.argv:
        pct = float(sys.argv[sys.argv.index("--change") + 1])
        rng = random.Random(1000 + int(sys.argv[sys.argv.index("--round") + 1]))
        for i in rng.sample(range(files), max(1, int(files * pct / 100))):
            p = path_of(root, i)
            with open(p, "wb") as f:
                f.write(content(rng, i, pool))
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return
    rng = random.Random(42)
    for d in range(100):
        os.makedirs(os.path.join(root, f"d{d:03d}"), exist_ok=True)
    for i in range(files):
        with open(path_of(root, i), "wb") as f:
            f.write(content(rng, i, pool))


main()
