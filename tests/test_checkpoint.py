"""Checkpoints do not lie: a folder written by another model or with other settings is
refused naming what differs, a resumed run says where it resumes, a longer run is
announced, and a finished run says so and returns its stored history."""

import numpy as np
import pytest

import mpc
import nn
from nn.plain import breast_cancer

DATA = breast_cancer()


def _fit(ctx, directory, hidden=(16,), lr=0.1, epochs=2, batch_size=32, optimizer="sgd",
         seed=0):
    """A small linear stack on 64 rows; returns the history fit gives back."""
    xtr, _, ytr, _ = DATA
    x = mpc.share(ctx, xtr[:64] if ctx.pid == 0 else None, 0, shape=(64, 30))
    y = mpc.share(ctx, ytr[:64] if ctx.pid == 0 else None, 0, shape=(64, 1))
    widths = (30,) + tuple(hidden) + (1,)
    model = nn.Sequential(*(nn.Linear(ctx, a, b, seed=i)
                            for i, (a, b) in enumerate(zip(widths, widths[1:]))))
    make = {"sgd": lambda ps: nn.SGD(ps, lr=lr, momentum=0.5),
            "adam": lambda ps: nn.Adam(ps, lr=lr)}[optimizer]
    return nn.fit(model, nn.MSELoss(), make(model.parameters()), x, y, epochs=epochs,
                  batch_size=batch_size, seed=seed, progress=False, checkpoint_dir=directory)


def run(directory, n_parties=2, **changes):
    """Every party's history from _fit with `changes`."""
    return mpc.run_local(lambda ctx: _fit(ctx, str(directory), **changes), n_parties,
                         timeout=60)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder holding a finished 2-epoch run, and that run's histories (each party's:
    seconds and bytes are its own)."""
    directory = tmp_path_factory.mktemp("ckpt")
    return directory, run(directory)


def _copy(trained, tmp_path):
    import shutil
    directory, history = trained
    shutil.copytree(directory, tmp_path / "ckpt")
    return tmp_path / "ckpt", history


@pytest.mark.parametrize("changes,differs", [
    ({"hidden": (32,)}, ["parameter 0.weight: (30, 16) in the checkpoint, (30, 32) now",
                         "parameter 1.weight: (16, 1) in the checkpoint, (32, 1) now"]),
    ({"hidden": (16, 8)}, ["model: Sequential(Linear, Linear) in the checkpoint, "
                           "Sequential(Linear, Linear, Linear) now",
                           "parameter 2.weight: none in the checkpoint, (8, 1) now"]),
    ({"lr": 0.5}, ["optimizer lr: 0.1 in the checkpoint, 0.5 now"]),
    ({"batch_size": 16}, ["batch_size: 32 in the checkpoint, 16 now"]),
    ({"optimizer": "adam"}, ["optimizer: SGD in the checkpoint, Adam now"]),
    ({"lr": nn.StepDecay(0.1, 2)}, ["optimizer lr: 0.1 in the checkpoint, StepDecay(initial=0.1, "
                                    "step_size=2, gamma=0.1) now"]),
    ({"seed": 3}, ["seed: 0 in the checkpoint, 3 now"]),
    ({"epochs": 1}, ["epochs: the checkpoint is at epoch 2, this run stops at 1"]),
])
def test_a_checkpoint_of_another_model_or_settings_is_refused_naming_what_differs(
        trained, tmp_path, changes, differs):
    directory, _ = _copy(trained, tmp_path)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    with pytest.raises(mpc.PartyFailed, match="CheckpointMismatch") as failed:
        run(directory, **changes)
    for line in differs:
        assert line in failed.value.detail, failed.value.detail
    assert "choose another checkpoint_dir" in failed.value.detail
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # nothing written


def test_another_number_of_parties_is_refused(trained, tmp_path):
    directory, _ = _copy(trained, tmp_path)
    with pytest.raises(mpc.PartyFailed, match="CheckpointMismatch") as failed:
        run(directory, n_parties=3)
    text = failed.value.detail
    assert "parties: 2 in the checkpoint, 3 now" in text or \
        "the parties hold no epoch in common (party 0: 1, 2; party 1: 1, 2; party 2: none)" \
        in text, text


def test_a_finished_run_says_so_and_returns_its_history(trained, tmp_path, capfd):
    directory, histories = _copy(trained, tmp_path)
    assert [h["epoch"] for h in histories[0]] == [1, 2]
    assert run(directory) == histories
    err = capfd.readouterr().err
    for pid in range(2):
        assert f"party {pid}: checkpoint {directory}: training finished (epoch 2 of 2): " \
               "nothing to train, returning its history" in err, err


def test_more_epochs_are_announced_and_the_history_covers_them_all(trained, tmp_path, capfd):
    directory, histories = _copy(trained, tmp_path)
    longer = run(directory, epochs=3)[0]
    history = histories[0]
    assert "party 0: checkpoint " f"{directory}: epochs changed from 2 to 3; resuming from " \
           "epoch 2 of 3" in capfd.readouterr().err
    assert longer[:2] == history and [h["epoch"] for h in longer] == [1, 2, 3]


def test_a_resumed_run_says_where_it_resumes(tmp_path, capfd):
    run(tmp_path, epochs=1)
    capfd.readouterr()
    for p in tmp_path.glob("party*-epoch2.npz"):
        p.unlink()
    run(tmp_path, epochs=2)
    assert f"party 1: checkpoint {tmp_path}: epochs changed from 1 to 2; resuming from " \
           "epoch 1 of 2" in capfd.readouterr().err


def test_parties_without_an_epoch_in_common_are_refused(trained, tmp_path):
    directory, _ = _copy(trained, tmp_path)
    for p in directory.glob("party1-*"):
        p.unlink()
    with pytest.raises(mpc.PartyFailed, match="no epoch in common") as failed:
        run(directory)
    assert "party 0: 1, 2; party 1: none" in failed.value.detail


def test_a_checkpoint_without_a_record_is_refused(trained, tmp_path):
    directory, _ = _copy(trained, tmp_path)
    for path in directory.glob("*.npz"):
        with np.load(path) as saved:
            arrays = {k: saved[k] for k in saved.files if k != "run-record"}
        np.savez(path, **arrays)
    with pytest.raises(mpc.PartyFailed, match="holds no record of the model and settings"):
        run(directory)


def _dp_fit(ctx, directory, sampling):
    rng = np.random.default_rng(0)
    x = mpc.share(ctx, rng.normal(size=(12, 3)) if ctx.pid == 0 else None, 0, shape=(12, 3))
    y = mpc.share(ctx, (rng.random((12, 1)) > 0.5) * 1.0 if ctx.pid == 0 else None, 0,
                  shape=(12, 1))
    model = nn.DPModel(nn.Linear(ctx, 3, 1, seed=0))
    model.compile(optimizer=nn.DPSGD(1.0, 1.0, learning_rate=0.5, sampling=sampling),
                  loss="binary_crossentropy")
    return model.fit(x, y, epochs=1, batch_size=6, progress=False, checkpoint_dir=directory)


def test_another_batch_sampling_is_refused(tmp_path):
    mpc.run_local(_dp_fit, 2, args=(str(tmp_path), "public-shuffle"), timeout=60)
    with pytest.raises(mpc.PartyFailed, match="CheckpointMismatch") as failed:
        mpc.run_local(_dp_fit, 2, args=(str(tmp_path), "poisson"), timeout=60)
    assert "\n  sampling: public-shuffle in the checkpoint, poisson now" in failed.value.detail
