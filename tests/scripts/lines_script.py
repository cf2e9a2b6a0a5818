"""Test script: every party prints 50 lines of 6000 characters (longer than a pipe
writes at once) as fast as it can, and returns its id."""


def main(ctx):
    for i in range(50):
        print(f"line {i} " + str(ctx.pid) * 6000, flush=True)
    return ctx.pid
