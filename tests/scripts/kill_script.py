"""Test script for the kill-point sweep: a multiplication, a comparison and a training
step. With MPC_KILL_AT="<pid>:<point>" (point: mul, compare or train) that party SIGKILLs
itself at its third message sent inside that point, i.e. mid-protocol."""

import os
import signal

import numpy as np

import mpc
import nn


def main(ctx):
    victim, point = os.environ.get("MPC_KILL_AT", ":").split(":")
    countdown = {"left": None}
    send = ctx.transport.send

    def send_or_die(*args):
        if countdown["left"] is not None:
            countdown["left"] -= 1
            if countdown["left"] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return send(*args)

    ctx.transport.send = send_or_die

    def arm(name):
        if victim == str(ctx.pid) and point == name:
            countdown["left"] = 3

    rng = np.random.default_rng(0)
    x = mpc.share(ctx, rng.normal(size=(64, 8)) if ctx.pid == 0 else None, 0, shape=(64, 8))
    y = mpc.share(ctx, rng.normal(size=(64, 1)) if ctx.pid == 1 else None, 1, shape=(64, 1))
    arm("mul")
    z = x * x
    arm("compare")
    below = z < 1.0
    arm("train")
    model = nn.Linear(ctx, 8, 1)
    nn.fit(model, nn.MSELoss(), nn.SGD(model.parameters(), lr=0.1), x, y, epochs=1,
           batch_size=32, progress=False)
    print(f"party {ctx.pid} done {float(below.sum().reveal())}", flush=True)
