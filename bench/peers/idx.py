"""Shared by the peers: the four IDX files of a data directory (plain or gzip) as NumPy
arrays, and the command-line options that mirror dptrain's."""
import argparse
import gzip
import os

import numpy as np


def _read(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                raw = f.read()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise FileNotFoundError(path)


def load(data_dir, val_split=0.2, seed=1):
    """(x_train, y_train, x_val, y_val, x_test, y_test); images as float32 / 255."""
    xtr = _read(os.path.join(data_dir, "train-images-idx3-ubyte"))
    ytr = _read(os.path.join(data_dir, "train-labels-idx1-ubyte"))
    xte = _read(os.path.join(data_dir, "t10k-images-idx3-ubyte"))
    yte = _read(os.path.join(data_dir, "t10k-labels-idx1-ubyte"))
    xtr = xtr.reshape(len(xtr), -1).astype(np.float32) / 255.0
    xte = xte.reshape(len(xte), -1).astype(np.float32) / 255.0
    perm = np.random.default_rng(seed).permutation(len(xtr))
    nv = int(round(len(xtr) * val_split))
    va, tr = perm[:nv], perm[nv:]
    return (xtr[tr], ytr[tr].astype(np.int64), xtr[va], ytr[va].astype(np.int64), xte,
            yte.astype(np.int64))


def options(threads=False):
    """The training options both peers take, with dptrain's defaults."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--arch", default="784-128-64-10")
    ap.add_argument("--optimizer", default="adam", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    if threads:
        ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()
