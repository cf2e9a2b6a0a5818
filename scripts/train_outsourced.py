"""The computing parties' side of outsourced training (see scripts/outsourced_demo.py).

Every owner in the cluster file has shared arrays "x" and "y" with `mpc share`; the
parties train a logistic regression on all owners' rows and reveal the model to the owner
named as the first script argument only. The parties see shares, and of the training
only the overflow guard's counts (zero in healthy training; tests/test_owners.py checks
that nothing else is opened to them).

    mpc party --config cluster.toml --id I scripts/train_outsourced.py hospital_a [epochs]
"""

import sys
import time

import mpc
import nn


def main(ctx):
    receiver = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    owners = sorted(ctx.owners)
    start = time.perf_counter()
    x = mpc.concatenate([mpc.input_from(ctx, o, "x") for o in owners])
    y = mpc.concatenate([mpc.input_from(ctx, o, "y") for o in owners])
    print(f"party {ctx.pid}: owners' data in after {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    model = nn.Linear(ctx, x.shape[1], 1, seed=0)
    history = nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=0.1), x, y,
                     epochs=epochs, batch_size=32, progress=False)
    mpc.reveal_to_owner(ctx, receiver, {"weight": model.weight.value,
                                        "bias": model.bias.value})
    if ctx.pid == 0:
        print(f"trained on {x.shape[0]} rows from {', '.join(owners)} in "
              f"{sum(h['seconds'] for h in history):.1f} s; model revealed to {receiver} only")
