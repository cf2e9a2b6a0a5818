"""Training loop and evaluation. Only aggregate metrics are revealed, never a prediction,
a gradient or a weight: the number of correct predictions (nn.accuracy), the guard's
counts of out-of-range values (nn.guard: zero in healthy training) and, only when asked
for with report_loss, the training loss on a fixed sample of rows."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext

import numpy as np

from nn import checkpoint, guard
from nn.module import evaluating
from nn.run_record import run_record


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


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list:
    """One epoch's batches: a public seeded permutation cut into batch_size rows."""
    order = rng.permutation(n)  # public: which rows form a batch reveals nothing of them
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _progress(ctx, total: int, show: bool):
    if not (show and ctx.pid == 0 and sys.stderr.isatty()):
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", leave=False)


def _stored(model) -> list:
    """What a checkpoint keeps of the model: its parameters, then its buffers (BatchNorm's
    running statistics), each an object with a secret .value."""
    buffers = model.buffers() if hasattr(model, "buffers") else []
    return model.parameters() + buffers


def guard_sample(n: int, rows: int = 256, seed: int = 0) -> np.ndarray:
    """The public, fixed sample of training rows the guard runs the model on."""
    return np.sort(np.random.default_rng(seed + 1).permutation(n)[:rows])


def fit(model, loss, optimizer, x, y, *, epochs: int, batch_size: int, seed: int = 0,
        evaluate=None, progress: bool = True, checkpoint_dir=None,
        guard_every: int | None = None, guard_rows: int = 256,
        report_loss: bool = False) -> list[dict]:
    """Minibatch training on secret data; returns one record per epoch: seconds, bytes
    sent, rounds, what `evaluate(model)` returns (e.g. a test accuracy), what
    `optimizer.metrics()` does (e.g. DP's epsilon) and, with `report_loss`, the training
    loss on a fixed sample of `guard_rows` rows (a statistic of the training data that is
    then revealed each epoch). A progress bar shows them on a terminal.

    Batches are drawn by a public seeded permutation each epoch (shuffled, not Poisson
    sampled), unless the optimiser has a batch_plan (nn.DPSGD's secret Poisson
    sampling). With `checkpoint_dir`, each party saves its shares after every epoch and a
    new call resumes after the newest epoch all parties saved (nn.checkpoint), saying so,
    if the model and settings are those of the checkpoint (else CheckpointMismatch names
    what differs; only `epochs` may grow); the history returned then covers every epoch,
    those before the resume too (all of them for a run that had already finished).

    The guard (nn.guard) runs after every `guard_every` steps (default: at the end of each
    epoch; 0: never): it reveals how many values of each layer (on the sample) and of each
    parameter left the safe range. With a differentially private optimiser it checks the
    parameters only, and report_loss is refused (the loss would be revealed without
    noise). On trouble, with checkpoints the epoch is rolled back and run once more (a
    failed probabilistic truncation is a random event); without, or if it happens again,
    FixedPointOverflow names the steps and layers.
    Example:
        history = nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), 0.1),
                         x, y, epochs=10, batch_size=32)
    """
    ctx = x.ctx
    private = hasattr(optimizer, "privacy")  # a DP optimiser (nn.DPSGD)
    if report_loss and private:
        raise ValueError("report_loss reveals the training loss without noise: not with a "
                         "differentially private optimiser")
    if private:
        optimizer.track(x.shape[0], batch_size)  # epsilon in every record
    rng = np.random.default_rng(seed)
    if hasattr(optimizer, "batch_plan"):  # a DP optimiser's own sampling
        plan = optimizer.batch_plan(x.shape[0], batch_size, rng, epochs)
    else:
        plan = [shuffled_batches(x.shape[0], batch_size, rng) for _ in range(epochs)]
    sample = guard_sample(x.shape[0], guard_rows, seed)
    history, retried = [], set()
    epoch = 0
    if checkpoint_dir is not None:
        run = run_record(model, loss, optimizer, x, y, epochs=epochs, batch_size=batch_size,
                         seed=seed, sampling=getattr(optimizer, "sampling", "public-shuffle"))
        epoch, history = checkpoint.resume(checkpoint_dir, ctx, _stored(model), optimizer,
                                           run)
        if epoch == 0:  # something to roll back to if the first epoch overflows
            checkpoint.save(checkpoint_dir, ctx, _stored(model), optimizer, 0, run)
    while epoch < epochs:
        first_step = sum(map(len, plan[:epoch])) + 1
        start, before = time.perf_counter(), ctx.stats.snapshot()
        bar = _progress(ctx, len(plan[epoch]), progress)
        try:
            # with DP, checked mode (mpc.Context.unchecked) is off during training: its
            # range counts would reveal something of the data without noise
            with ctx.unchecked() if private else nullcontext():
                train_loss = _run_epoch(model, loss, optimizer, x, y, plan[epoch],
                                        first_step, sample, guard_every, bar,
                                        {"report_loss": report_loss, "outputs": not private})
        except guard.FixedPointOverflow:
            if checkpoint_dir is None or epoch in retried:
                raise
            retried.add(epoch)
            epoch, history = checkpoint.resume(checkpoint_dir, ctx, _stored(model),
                                               optimizer, run)
            continue
        finally:
            if bar is not None:
                bar.close()
        used = ctx.stats.snapshot()
        record = {"epoch": epoch + 1, **({"loss": train_loss} if report_loss else {}),
                  "seconds": time.perf_counter() - start,
                  "bytes_sent": used.bytes_sent - before.bytes_sent,
                  "rounds": used.rounds - before.rounds}
        if evaluate is not None:
            with evaluating(model):
                record.update(evaluate(model))
        if hasattr(optimizer, "metrics"):
            record.update(optimizer.metrics())
        history.append(record)
        if checkpoint_dir is not None:
            checkpoint.save(checkpoint_dir, ctx, _stored(model), optimizer, epoch + 1, run,
                            history)
        _report(ctx, record, progress)
        epoch += 1
    return history


def _run_epoch(model, loss, optimizer, x, y, batches, first_step, sample, guard_every, bar,
               checks: dict):
    """The epoch's steps with the guard's `checks`; returns the last revealed loss (None
    unless report_loss)."""
    checked, train_loss, metrics = first_step, None, {}
    for i, rows in enumerate(batches):
        optimizer.zero_grad()
        loss(model(x[rows]), y[rows])
        model.backward(loss.backward(), input_grad=False)
        optimizer.step()
        step, last = first_step + i, i == len(batches) - 1
        if last if guard_every is None else guard_every and (step % guard_every == 0 or last):
            with evaluating(model):
                train_loss, where = guard.check(model, loss, x[sample], y[sample], **checks)
            if guard.trouble(where, train_loss):
                raise guard.FixedPointOverflow(where, train_loss, (checked, step))
            checked = step + 1
        if bar is not None:
            shown = {} if train_loss is None else {"loss": f"{train_loss:.4f}"}
            if hasattr(optimizer, "metrics") and (i == 0 or last):
                metrics = optimizer.metrics()  # e.g. the epsilon spent so far
            shown.update({k: f"{v:.3g}" if isinstance(v, (int, float)) else str(v)
                          for k, v in metrics.items()})
            shown["MB sent"] = f"{x.ctx.stats.total.bytes_sent / 1e6:.1f}"
            bar.set_postfix(shown, refresh=False)
            bar.update()
    return train_loss


def _report(ctx, record: dict, show: bool) -> None:
    """One line per epoch on a terminal (party 0 only)."""
    if show and ctx.pid == 0 and sys.stderr.isatty():
        shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in record.items()}
        print("  ".join(f"{k} {v}" for k, v in shown.items()), file=sys.stderr)
