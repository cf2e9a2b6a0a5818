"""TF Privacy's tutorial CNN with DP-SGD on shares: `mpc run -n 3 scripts/train_dp_cnn.py`.

TF Privacy's Keras tutorial (mnist_dpsgd_tutorial_keras.py) trains, on 28x28 MNIST:
Conv2D(16, 8, strides=2, padding="same", relu), MaxPool2D(2, 1), Conv2D(32, 4, strides=2,
padding="valid", relu), MaxPool2D(2, 1), Flatten, Dense(32, relu), Dense(10), with
DPKerasSGDOptimizer(l2_norm_clip, noise_multiplier, num_microbatches = batch).
On scikit-learn's 8x8 digits the same network, scaled with the image (28 -> 8, so the
kernels 8 -> 4 and 4 -> 2; the second convolution's stride 2 would leave nothing of a 3x3
map, so it is 1):
    Conv2d(1, 16, 4, stride 2, padding 1) [16x4x4], ReLU, MaxPool2d(2, stride 1) [3x3],
    Conv2d(16, 32, 2, stride 1) [32x2x2], ReLU, MaxPool2d(2, stride 1) [32x1x1], Flatten,
    Linear(32, 32), ReLU, Linear(32, 10)           (3,738 parameters)
The convolutions' per-microbatch gradients are formed on shares (one batched product per
layer) and the Dense layers' are clipped from their factors, all under one norm. Party 0
prints the test accuracy and epsilon next to the same DP-SGD in float64 (the same total
noise: each of the n parties adds the full amount). `--epochs E` (default 3),
`--sampling poisson` for secret Poisson sampling (a pass over all rows per step).
"""

import sys

import numpy as np

import mpc
import nn
from nn import plain
from nn.plain import digits

BATCH, LR, MOMENTUM, CLIP, NOISE, DELTA = 64, 0.5, 0.5, 1.0, 1.1, 1e-5


def shares_model(ctx):
    return nn.DPModel(nn.Conv2d(ctx, 1, 16, 4, stride=2, padding=1, seed=0), nn.ReLU(),
                      nn.MaxPool2d(2, stride=1),
                      nn.Conv2d(ctx, 16, 32, 2, stride=1, seed=1), nn.ReLU(),
                      nn.MaxPool2d(2, stride=1), nn.Flatten(),
                      nn.Linear(ctx, 32, 32, seed=2), nn.ReLU(), nn.Linear(ctx, 32, 10, seed=3))


def float64_model():
    return plain.Sequential(plain.Conv2d(1, 16, 4, stride=2, padding=1, seed=0), plain.ReLU(),
                            plain.MaxPool2dStrided(2, 1),
                            plain.Conv2d(16, 32, 2, stride=1, seed=1), plain.ReLU(),
                            plain.MaxPool2dStrided(2, 1), plain.Flatten(),
                            plain.Linear(32, 32, 2), plain.ReLU(), plain.Linear(32, 10, 3))


def main(ctx):
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 3
    sampling = sys.argv[sys.argv.index("--sampling") + 1] if "--sampling" in sys.argv \
        else "public-shuffle"
    xtr, xte, ytr, yte = digits()
    xtr, xte = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)[ctx.pid]
    x, y = mpc.share_rows(ctx, xtr[mine]), mpc.share_rows(ctx, ytr[mine])
    test = (mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape),
            mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape))
    model = shares_model(ctx)
    model.compile(optimizer=nn.DPSGD(CLIP, NOISE, BATCH if sampling == "public-shuffle"
                                     else None, LR, MOMENTUM, delta=DELTA, sampling=sampling),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=BATCH, validation_data=test,
                        progress=False)
    if ctx.pid == 0:
        reference = float64_model()
        plain.dp_sgd_train(reference, xtr, ytr, epochs=epochs, batch_size=BATCH, lr=LR,
                           momentum=MOMENTUM, l2_norm_clip=CLIP,
                           noise_std=np.sqrt(ctx.n_parties) * NOISE * CLIP, sampling=sampling)
        print(f"{ctx.n_parties} parties, TF Privacy's tutorial CNN scaled to 8x8 digits, "
              f"{sampling}, batch {BATCH}, clip {CLIP}, noise {NOISE}, lr {LR}")
        for h in history:
            print(f"epoch {h['epoch']}  test accuracy {h['val_accuracy']:.3f}  epsilon "
                  f"{h['epsilon']:.2f}  {h['seconds']:.0f} s  {h['bytes_sent'] / 1e6:.0f} MB")
        print(f"on shares {history[-1]['val_accuracy']:.3f}, float64 DP-SGD "
              f"{plain.accuracy(reference, xte, yte):.3f}")
    return history
