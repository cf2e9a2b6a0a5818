"""The computing parties' side of private inference for owners who do not compute:

    python -c "import nn; nn.onnx_to_npz('cnn.onnx', 'cnn.npz')"       # the model's owner
    mpc share --config cluster.toml --owner modelco cnn.npz
    mpc share --config cluster.toml --owner clinic --receive predicted.npz images.npz
    mpc party --config cluster.toml --id I scripts/outsourced_inference.py modelco clinic

The model's owner shares its weights and the model's public description (layer kinds and
weight shapes); the data's owner shares its array "x"; the parties run the model on
shares and reveal the predicted classes (one-hot, "predicted") to the data's owner only.
The parties open the description and nothing else.
"""

import sys

import mpc
import nn


def main(ctx):
    model_owner, data_owner = sys.argv[1], sys.argv[2]
    model = nn.from_onnx(None, ctx, owner=model_owner)
    x = mpc.input_from(ctx, data_owner, "x")
    mpc.reveal_to_owner(ctx, data_owner, {"predicted": model(x).argmax(axis=-1)})
    if ctx.pid == 0:
        print(f"{x.shape[0]} predictions revealed to {data_owner} only", file=sys.stderr)
