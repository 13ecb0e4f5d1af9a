"""Generated folder trees for the backup tests, and comparing two trees the way a
restore must match its source: same entries, types, bytes, modes, mtimes and symlink
targets (plus `diff -r`)."""

import hashlib
import os
import random
import subprocess


def write(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


def make_tree(root, n_small=200, seed=1):
    """Empty files, a large file (random and text chunks), a sparse file, unicode
    names, deep folders, symlinks (one dangling), odd modes, and n_small small files."""
    rnd = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    write(os.path.join(root, "empty"), b"")
    write(os.path.join(root, "empty dir", "also empty"), b"")
    os.makedirs(os.path.join(root, "nothing here"), exist_ok=True)
    big = rnd.randbytes(5 * 1024 * 1024) + b"".join(
        b"line %d of a text that compresses well\n" % i for i in range(120000))
    write(os.path.join(root, "large.bin"), big)
    with open(os.path.join(root, "sparse.img"), "wb") as f:
        f.truncate(24 * 1024 * 1024)
        f.seek(10 * 1024 * 1024)
        f.write(b"data in the middle of a hole")
    write(os.path.join(root, "ünïcødé", "日本語 ファイル.txt"), "héllo wörld\n".encode())
    write(os.path.join(root, "ünïcødé", "emoji 🚀.md"), b"rocket\n")
    deep = os.path.join(root, *["d%02d" % i for i in range(40)])
    write(os.path.join(deep, "bottom.txt"), b"at the bottom\n")
    os.symlink("large.bin", os.path.join(root, "link-to-large"))
    os.symlink("/nonexistent/target", os.path.join(root, "dangling"))
    os.symlink("ünïcødé", os.path.join(root, "link-to-dir"))
    script = os.path.join(root, "run.sh")
    write(script, b"#!/bin/sh\necho hi\n")
    os.chmod(script, 0o750)
    os.chmod(os.path.join(root, "nothing here"), 0o711)
    for i in range(n_small):
        write(os.path.join(root, "small", "s%03d" % (i % 100), "f%05d.txt" % i),
              b"small file %d\n" % i * (i % 7))
    return root


def describe(root):
    """path -> (type, mode, mtime_ns, size, sha256 or link target) for every entry."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", st.st_mode & 0o7777, st.st_mtime_ns)
            else:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", st.st_mode & 0o7777, st.st_mtime_ns, st.st_size, digest)
    return out


def assert_same_tree(source, restored):
    proc = subprocess.run(["diff", "-r", "--no-dereference", source, restored],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    want, got = describe(source), describe(restored)
    assert sorted(want) == sorted(got)
    for path in want:
        assert want[path] == got[path], path
