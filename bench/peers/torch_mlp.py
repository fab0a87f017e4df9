"""The dptrain recipe in PyTorch on the CPU: same data, split fraction, architecture,
optimiser and hyperparameters. Prints key: value lines like dptrain's summary."""
import time

import numpy as np
import torch
import torch.nn as nn

import idx

a = idx.options(threads=True)

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
xtr, ytr, xva, yva, xte, yte = idx.load(a.data, 0.2, a.seed)
sizes = [int(s) for s in a.arch.split("-")]
layers = []
for i in range(len(sizes) - 1):
    layers.append(nn.Linear(sizes[i], sizes[i + 1]))
    if i < len(sizes) - 2:
        layers.append(nn.ReLU())
        if a.dropout > 0:
            layers.append(nn.Dropout(a.dropout))
model = nn.Sequential(*layers)
for m in model:
    if isinstance(m, nn.Linear):  # He initialisation, zero bias, as dptrain
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)
if a.optimizer == "adam":
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
else:
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
lossf = nn.CrossEntropyLoss()
Xtr, Ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
g = torch.Generator().manual_seed(a.seed)
train_s = 0.0
samples = 0
for epoch in range(a.epochs):
    model.train()
    perm = torch.randperm(len(Xtr), generator=g)
    t0 = time.perf_counter()
    for s in range(0, len(perm), a.batch):
        b = perm[s:s + a.batch]
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(Xtr[b]), Ytr[b])
        loss.backward()
        opt.step()
        samples += len(b)
    train_s += time.perf_counter() - t0


def evaluate(x, y):
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        return (out.argmax(1).numpy() == y).mean(), lossf(out, torch.from_numpy(y)).item()


va_acc, _ = evaluate(xva, yva)
te_acc, te_cost = evaluate(xte, yte)
print(f"threads: {a.threads}")
print(f"train_seconds: {train_s:.3f}")
print(f"samples_per_s: {samples / train_s:.0f}")
print(f"val_accuracy: {va_acc:.4f}")
print(f"test_accuracy: {te_acc:.4f}")
print(f"test_cost: {te_cost:.4f}")
