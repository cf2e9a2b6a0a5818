"""Keras-style private training on scikit-learn's wine data:
`mpc run -n 3 scripts/keras_wine.py [epochs]`.

Party 1 owns the data (the other parties pass None and learn only its shape). A small
network with BatchNorm, GELU and Dropout trains with AdamW under a cosine learning-rate
schedule; evaluate reveals the test loss and accuracy to everyone, predict reveals the
test predictions to party 1 only, which prints its confusion matrix.
"""

import sys

import numpy as np

import nn

OWNER, BATCH = 1, 16


def wine():
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    x, y = load_wine(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(xtr)
    return scaler.transform(xtr), scaler.transform(xte), ytr, yte


def main(ctx):
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    xtr, xte, ytr, yte = wine() if ctx.pid == OWNER else (None,) * 4
    model = nn.Model(nn.Linear(ctx, 13, 16, seed=0), nn.BatchNorm1d(ctx, 16), nn.GELU(),
                     nn.Dropout(ctx, 0.2), nn.Linear(ctx, 16, 3, seed=1))
    steps = epochs * -(-142 // BATCH)
    model.compile(optimizer=nn.AdamW(lr=nn.CosineDecay(0.02, decay_steps=steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(xtr, ytr, epochs=epochs, batch_size=BATCH, owner=OWNER,
                        validation_data=(xte, yte))
    scores = model.evaluate(xte, yte, owner=OWNER)
    logits = model.predict(xte, owner=OWNER)  # None except at the owner
    if ctx.pid == 0:
        for h in history:
            print(f"epoch {h['epoch']}  val loss {h['val_loss']:.3f}  val accuracy "
                  f"{h['val_accuracy']:.3f}  {h['seconds']:.1f} s  {h['rounds']} rounds")
        print(f"test loss {scores['loss']:.3f}, test accuracy {scores['accuracy']:.3f}")
    if ctx.pid == OWNER:
        confusion = np.zeros((3, 3), dtype=int)
        np.add.at(confusion, (yte, logits.argmax(axis=1)), 1)
        print(f"party {OWNER} (the owner) sees its predictions; confusion matrix:\n{confusion}")
    return scores
