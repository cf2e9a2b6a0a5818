"""Training loop and evaluation. Only aggregate metrics are revealed (the number of
correct predictions), never a prediction, a gradient or a weight."""

from __future__ import annotations

import sys
import time

import numpy as np

from nn import checkpoint


def accuracy(model, x, y) -> float:
    """Fraction of correct predictions, revealing only the count. `y` holds 0/1 labels of
    shape [n, 1] for a binary model (logit > 0 predicts 1) or one-hot rows."""
    logits = model(x)
    if logits.shape[-1] == 1:
        wrong = ((logits > 0.0) - y).square()  # 0 when right, 1 when wrong
        correct = y.shape[0] - wrong.sum().reveal()
    else:
        correct = (logits.argmax(axis=-1) * y).sum().reveal()
    return float(correct) / y.shape[0]


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)  # public: which rows form a batch reveals nothing of them
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _progress(ctx, total: int, show: bool):
    if not (show and ctx.pid == 0 and sys.stderr.isatty()):
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", leave=False)


def fit(model, loss, optimizer, x, y, *, epochs: int, batch_size: int, seed: int = 0,
        evaluate=None, progress: bool = True, checkpoint_dir=None) -> list[dict]:
    """Minibatch training on secret data; returns one record per epoch (seconds, bytes
    sent, rounds, and whatever `evaluate(model)` returns, e.g. a test accuracy).

    Batches are drawn by a public seeded permutation each epoch (shuffled, not Poisson
    sampled). With `checkpoint_dir`, each party saves its shares after every epoch and a
    new call resumes after the newest epoch all parties saved (nn.checkpoint). Example:
        history = nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), 0.1),
                         x, y, epochs=10, batch_size=32)
    """
    ctx = x.ctx
    rng = np.random.default_rng(seed)
    history = []
    done = checkpoint.resume(checkpoint_dir, ctx, model.parameters(), optimizer) \
        if checkpoint_dir is not None else 0
    for epoch in range(epochs):
        batches = _batches(x.shape[0], batch_size, rng)  # drawn even when skipped: same order
        if epoch < done:
            continue
        start, before = time.perf_counter(), ctx.stats.snapshot()
        bar = _progress(ctx, len(batches), progress)
        for rows in batches:
            optimizer.zero_grad()
            loss(model(x[rows]), y[rows])
            model.backward(loss.backward())
            optimizer.step()
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        used = ctx.stats.snapshot()
        record = {"epoch": epoch + 1, "seconds": time.perf_counter() - start,
                  "bytes_sent": used.bytes_sent - before.bytes_sent,
                  "rounds": used.rounds - before.rounds}
        if evaluate is not None:
            record.update(evaluate(model))
        if checkpoint_dir is not None:
            checkpoint.save(checkpoint_dir, ctx, model.parameters(), optimizer, epoch + 1)
        history.append(record)
    return history
