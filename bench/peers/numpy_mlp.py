"""A from-scratch NumPy MLP trainer (ReLU, softmax cross-entropy, backprop by hand),
the usual 'write it yourself' baseline. Same data, split and architecture as dptrain;
Adam (PyTorch's formulas) or plain SGD; inverted dropout. key: value lines."""
import time

import numpy as np

import idx

a = idx.options()

rng = np.random.default_rng(a.seed)
xtr, ytr, xva, yva, xte, yte = idx.load(a.data, 0.2, a.seed)
sizes = [int(s) for s in a.arch.split("-")]
W = [(rng.standard_normal((sizes[i], sizes[i + 1])) * np.sqrt(2.0 / sizes[i])).astype(np.float32)
     for i in range(len(sizes) - 1)]
b = [np.zeros(sizes[i + 1], np.float32) for i in range(len(sizes) - 1)]
params = W + b
m1 = [np.zeros_like(p) for p in params]
m2 = [np.zeros_like(p) for p in params]
L = len(W)


def forward(x, train):
    hs, masks = [x], []
    h = x
    for i in range(L):
        z = h @ W[i] + b[i]
        if i < L - 1:
            h = np.maximum(z, 0)
            if train and a.dropout > 0:
                mk = (rng.random(h.shape, dtype=np.float32) >= a.dropout) / np.float32(1 - a.dropout)
                h = h * mk
                masks.append(mk)
            else:
                masks.append(None)
            hs.append(h)
        else:
            h = z
    return hs, masks, h


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


t = 0
train_s = 0.0
samples = 0
for epoch in range(a.epochs):
    perm = rng.permutation(len(xtr))
    t0 = time.perf_counter()
    for s in range(0, len(perm), a.batch):
        ix = perm[s:s + a.batch]
        x, y = xtr[ix], ytr[ix]
        hs, masks, z = forward(x, True)
        d = softmax(z)
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        gW, gb = [None] * L, [None] * L
        for i in reversed(range(L)):
            gW[i] = hs[i].T @ d
            gb[i] = d.sum(0)
            if i > 0:
                d = d @ W[i].T
                if masks[i - 1] is not None:
                    d *= masks[i - 1]
                d *= hs[i] > 0
        grads = gW + gb
        t += 1
        for k, (p, gr) in enumerate(zip(params, grads)):
            gr = gr + a.weight_decay * p
            if a.optimizer == "sgd":
                p -= a.lr * gr
            else:
                m1[k] = 0.9 * m1[k] + 0.1 * gr
                m2[k] = 0.999 * m2[k] + 0.001 * gr * gr
                p -= (a.lr / (1 - 0.9 ** t)) * m1[k] / (np.sqrt(m2[k]) / np.sqrt(1 - 0.999 ** t) + 1e-8)
        samples += len(ix)
    train_s += time.perf_counter() - t0


def evaluate(x, y):
    _, _, z = forward(x, False)
    p = softmax(z)
    return (z.argmax(1) == y).mean(), float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())


va_acc, _ = evaluate(xva, yva)
te_acc, te_cost = evaluate(xte, yte)
print(f"train_seconds: {train_s:.3f}")
print(f"samples_per_s: {samples / train_s:.0f}")
print(f"val_accuracy: {va_acc:.4f}")
print(f"test_accuracy: {te_acc:.4f}")
print(f"test_cost: {te_cost:.4f}")
