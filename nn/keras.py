"""Keras-shaped models: nn.Model (plain training) and nn.DPModel (DP-SGD), with
compile / fit / evaluate / predict, on numpy arrays or secret tensors.

    model = nn.Model(nn.Linear(ctx, 13, 16), nn.ReLU(), nn.Linear(ctx, 16, 3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10, batch_size=32, owner=0)  # party 0 has the data
    model.evaluate(x_test, y_test, owner=0)        # {"loss": ..., "accuracy": ...}
    model.predict(x_test, owner=0)                 # the predictions, at party 0 only

Data: a SecretTensor is used as it is; anything else is a numpy array of party `owner`,
secret-shared by it (the other parties pass None, or anything: only the owner's array is
read, and they learn its shape only). Losses are on the model's raw outputs (logits), as
Keras' from_logits=True. Integer labels for "sparse_categorical_crossentropy" are one-hot
encoded by their owner before sharing (free), or on shares once per call (nn.one_hot, 8
rounds) when they are already secret.

What is revealed: fit reveals what nn.fit does (the guard's counts; validation accuracy
and loss when validation data is given); evaluate reveals the mean loss and the accuracy;
predict reveals the outputs to party `to` only (by default the data's owner). To learn
the classes' count, fit and evaluate run the model once on one row (in eval mode).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

import mpc
from nn.activations import Softmax
from nn.dp import DPSGD, PER_MICROBATCH_LAYERS, RowLoss, per_microbatch_backward
from nn.graph import Graph
from nn.layers import Sequential, Sigmoid
from nn.losses import BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropyLoss, one_hot
from nn.module import Module, evaluating
from nn.optim import SGD, Adam, AdamW
from nn.train import accuracy, fit

LOSSES = {"sparse_categorical_crossentropy": SoftmaxCrossEntropyLoss,
          "categorical_crossentropy": SoftmaxCrossEntropyLoss,
          "binary_crossentropy": BCEWithLogitsLoss, "mse": MSELoss}
OPTIMIZERS = {"sgd": lambda ps: SGD(ps, lr=0.01), "adam": lambda ps: Adam(ps, lr=0.001),
              "adamw": lambda ps: AdamW(ps, lr=0.001, weight_decay=0.004)}  # Keras' defaults
METRICS = {"accuracy": "accuracy", "acc": "accuracy"}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Model(Sequential):
    """Layers in order (nn.Sequential) trained Keras-style; see the module docstring.
    A single nn.Module (an nn.Graph from nn.from_onnx, say) may be given as the one layer.
    """

    def __init__(self, *layers):
        if not layers:
            raise ValueError(f"{type(self).__name__} needs at least one layer")
        for i, layer in enumerate(layers):
            if isinstance(layer, type) and issubclass(layer, Module):
                raise TypeError(f"layer {i} is the class {layer.__name__}, not a layer: "
                                f"call it, e.g. {layer.__name__}(...)")
            if isinstance(layer, mpc.Context):
                raise TypeError(f"layer {i} is a Context: {type(self).__name__} takes layers "
                                f"only (each layer was built with ctx already)")
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not an nn.Module")
        super().__init__(*layers)
        self.optimizer = self.loss = self.loss_name = None
        self.metric_names: list[str] = []
        self._out_features: dict = {}

    # ------------------------------------------------------------ compile
    def compile(self, optimizer="sgd", loss=None, metrics=None) -> None:
        """optimizer: "sgd" (lr 0.01), "adam" (0.001), "adamw" (0.001, weight decay 0.004),
        or an optimiser object (built on model.parameters(), or on none: it is bound
        here); loss: "sparse_categorical_crossentropy", "categorical_crossentropy",
        "binary_crossentropy" (all three on logits), "mse", or a loss object; metrics:
        a list, ["accuracy"] or empty."""
        self.loss_name, self.loss = self._loss(loss)
        self.metric_names = self._metrics(metrics)
        self.optimizer = self._optimizer(optimizer)
        last = _last_module(self)
        if self.loss_name in LOSSES and self.loss_name != "mse" and \
                isinstance(last, (Softmax, Sigmoid)):
            warnings.warn(f"compile: loss {self.loss_name!r} works on logits, but the model "
                          f"ends in {type(last).__name__}: its outputs are probabilities, "
                          f"so drop that last layer for training", stacklevel=2)

    def _loss(self, loss):
        if loss is None:
            raise ValueError(f"compile: loss is required; one of {sorted(LOSSES)} or a loss "
                             f"object such as nn.MSELoss()")
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"compile: unknown loss {loss!r}; choose one of "
                                 f"{sorted(LOSSES)}")
            return loss, LOSSES[loss]()
        if isinstance(loss, type):
            raise TypeError(f"compile: loss is the class {loss.__name__}; pass an instance, "
                            f"loss={loss.__name__}()")
        if not (callable(loss) and hasattr(loss, "backward")):
            raise TypeError(f"compile: loss must be a name or a loss object (called as "
                            f"loss(outputs, targets), with backward()), got {loss!r}")
        return None, loss

    def _metrics(self, metrics) -> list[str]:
        if metrics is None:
            return []
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: metrics must be a list such as ['accuracy'], got "
                            f"{metrics!r}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"compile: unknown metrics {unknown}; supported: {list(METRICS)}")
        return [METRICS[m] for m in metrics]

    def _optimizer(self, optimizer):
        if isinstance(optimizer, str):
            key = optimizer.lower()
            if key not in OPTIMIZERS:
                raise ValueError(f"compile: unknown optimizer {optimizer!r}; choose one of "
                                 f"{sorted(OPTIMIZERS)} or pass an optimiser object")
            return OPTIMIZERS[key](self.parameters())
        if isinstance(optimizer, type):
            raise TypeError(f"compile: optimizer is the class {optimizer.__name__}; pass an "
                            f"instance, e.g. {optimizer.__name__}(lr=0.1), or a name")
        if isinstance(optimizer, DPSGD):
            raise ValueError("compile: nn.DPSGD trains an nn.DPModel (per-microbatch "
                             "gradients); use nn.DPModel(...) for differential privacy")
        if not (hasattr(optimizer, "step") and hasattr(optimizer, "parameters")):
            raise TypeError(f"compile: optimizer must be a name or an optimiser object "
                            f"(nn.SGD, nn.Adam, nn.AdamW), got {optimizer!r}")
        self._bind(optimizer)
        return optimizer

    def _bind(self, optimizer) -> None:
        if not optimizer.parameters:
            optimizer.parameters = self.parameters()
        elif [id(p) for p in optimizer.parameters] != [id(p) for p in self.parameters()]:
            raise ValueError("compile: the optimizer was built on other parameters than "
                             "this model's; build it on model.parameters() or on none")

    # ------------------------------------------------------------ data
    def _ctx(self, *values):
        for v in values:
            if isinstance(v, mpc.SecretTensor):
                return v.ctx
        params = self.parameters()
        if params:
            return params[0].value.ctx
        for m in self.modules():
            if getattr(m, "ctx", None) is not None:
                return m.ctx
        raise ValueError("the model has no parameters to take the computation from: "
                         "pass the data as secret tensors (mpc.share)")

    def _secret(self, ctx, name: str, value, owner) -> mpc.SecretTensor:
        """[value]: a SecretTensor as it is, else party `owner`'s array, shared by it."""
        if isinstance(value, mpc.SecretTensor):
            if value.ctx is not ctx:
                raise ValueError(f"{name} belongs to another computation than the model")
            return value
        if isinstance(owner, bool) or not isinstance(owner, numbers.Integral) or \
                not 0 <= owner < ctx.n_parties:
            raise ValueError(f"owner must be a party id 0..{ctx.n_parties - 1} (who holds "
                             f"{name}), got {owner!r}")
        array = None
        if ctx.pid == owner:
            if value is None:
                raise ValueError(f"{name} is None at party {owner}, its owner: pass the "
                                 f"array there (the other parties may pass None)")
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must be a numeric array or a SecretTensor, got "
                                f"{type(value).__name__} ({exc})") from None
            if array.ndim == 0 or array.shape[0] == 0:
                raise ValueError(f"{name} must have at least one row, got shape "
                                 f"{array.shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} holds NaN or infinite values")
        return mpc.share(ctx, array, int(owner))

    def _out_width(self, x) -> int:
        """The model's output width for inputs like x (one forward on one row, in eval
        mode, once per input shape; unchecked: a probe of shapes whose values are
        dropped, on training data whose range counts DP training must not open)."""
        key = tuple(x.shape[1:])
        if key not in self._out_features:
            try:
                with evaluating(self), x.ctx.unchecked():
                    out = self(x[:1])
            except mpc.ShapeError as exc:
                raise mpc.ShapeError(f"inputs of shape {x.shape} do not fit the model: "
                                     f"{exc}") from None
            self._out_features[key] = out.shape[1:]
        shape = self._out_features[key]
        if len(shape) != 1:
            raise mpc.ShapeError(f"the model's outputs have shape [N, {', '.join(map(str, shape))}]"
                                 f"; compile/fit losses need [N, outputs] (add nn.Flatten())")
        return shape[0]

    def _targets(self, ctx, name: str, y, owner, x) -> mpc.SecretTensor:
        """y as the loss wants it: one-hot rows for the softmax losses, [N, 1] for the
        binary one, as given otherwise; checked against the model's output width."""
        if self.loss_name is None:  # a loss object: y as given
            ys = self._secret(ctx, name, y, owner)
            if ys.shape[0] != x.shape[0]:
                raise mpc.ShapeError(f"x has {x.shape[0]} rows but {name} has {ys.shape[0]}")
            return ys
        width = self._out_width(x)
        if self.loss_name == "sparse_categorical_crossentropy":
            if isinstance(y, mpc.SecretTensor):
                return one_hot(self._secret(ctx, name, y, owner), width)
            if ctx.pid == owner:
                y = _one_hot_labels(name, y, width)
        elif self.loss_name == "binary_crossentropy" and not isinstance(y, mpc.SecretTensor) \
                and ctx.pid == owner and np.ndim(y) == 1:
            y = np.asarray(y).reshape(-1, 1)
        ys = self._secret(ctx, name, y, owner)
        if ys.ndim == 1 and width == 1:
            ys = ys.reshape(-1, 1)
        if ys.shape[1:] != (width,):
            hint = ""
            if self.loss_name == "categorical_crossentropy" and ys.ndim == 1:
                hint = "; integer labels need loss='sparse_categorical_crossentropy'"
            raise mpc.ShapeError(f"{name} has shape {ys.shape} but the model outputs "
                                 f"[N, {width}]{hint}")
        if ys.shape[0] != x.shape[0]:
            raise mpc.ShapeError(f"x has {x.shape[0]} rows but {name} has {ys.shape[0]}")
        return ys

    def _data(self, x, y, owner, names=("x", "y")):
        ctx = self._ctx(x, y)
        xs = self._secret(ctx, names[0], x, owner)
        return xs, self._targets(ctx, names[1], y, owner, xs)

    def _compiled(self, what: str) -> None:
        if self.optimizer is None:
            raise RuntimeError(f"call compile(optimizer, loss) before {what}")

    # ------------------------------------------------------------ fit / evaluate / predict
    def fit(self, x, y, *, epochs: int = 1, batch_size: int = 32, validation_data=None,
            validation_split: float = 0.0, owner: int = 0, seed: int = 0, verbose=None,
            shuffle: bool = True, **fit_options) -> list[dict]:
        """Train with nn.fit (fit_options go to it: progress, checkpoint_dir, guard_every,
        report_loss, ...); returns one record per epoch (seconds, bytes_sent, rounds,
        and val_loss / val_accuracy with validation data: (x_val, y_val), shared by
        `owner` too, or the last `validation_split` fraction of the rows, as Keras takes
        it). verbose=0 hides the progress bar. Batches are always shuffled (nn.fit's public
        seeded permutation per epoch). The model is put in training mode."""
        self._compiled("fit")
        if not shuffle:
            raise ValueError("shuffle=False is not supported: nn.fit draws each epoch's "
                             "batches by a public seeded permutation (set seed= to fix it)")
        epochs = _positive_int("epochs", epochs)
        batch_size = _positive_int("batch_size", batch_size)
        if verbose is not None:
            fit_options.setdefault("progress", bool(verbose))
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        if validation_split and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        self._check_batching(batch_size)
        xs, ys = self._data(x, y, owner)
        validation = None
        if validation_split:
            keep = int(xs.shape[0] * (1 - validation_split))
            if not 0 < keep < xs.shape[0]:
                raise ValueError(f"validation_split {validation_split} of {xs.shape[0]} rows "
                                 f"leaves no training or no validation rows")
            validation, xs, ys = (xs[keep:], ys[keep:]), xs[:keep], ys[:keep]
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            validation = self._data(*validation_data, owner, names=("validation_data[0]",
                                                                     "validation_data[1]"))
        self.train()

        def evaluate(model) -> dict:
            if validation is None:
                return {}
            return {f"val_{k}": v for k, v in self._scores(*validation).items()}

        try:
            return fit(self, self._training_loss(), self.optimizer, xs, ys, epochs=epochs,
                       batch_size=batch_size, seed=seed, evaluate=evaluate, **fit_options)
        finally:
            self.eval()  # as in Keras, model(x) after fit is inference (Dropout off,
            # BatchNorm's running statistics); model.train() to train it by hand

    def _training_loss(self):
        """The loss fit trains with (DPModel: one giving each row's own gradient)."""
        return self.loss

    def _check_batching(self, batch_size: int) -> None:
        """Model: nothing to check; DPModel: microbatches."""

    def _scores(self, xs, ys) -> dict:
        """{"loss", and "accuracy" if asked for} on secret data, in eval mode: reveals
        the two numbers only."""
        with evaluating(self):
            out = self(xs)
            self.loss(out, ys)
            scores = {"loss": float(self.loss.value().reveal())}
            if "accuracy" in self.metric_names:
                scores["accuracy"] = accuracy(lambda _: out, xs, ys)
        return scores

    def evaluate(self, x, y, *, owner: int = 0) -> dict:
        """The loss and metrics on (x, y), revealed to every party: {"loss", "accuracy"}."""
        self._compiled("evaluate")
        return self._scores(*self._data(x, y, owner))

    def predict(self, x, *, owner: int = 0, to=None) -> np.ndarray | None:
        """The model's outputs on x, in eval mode, revealed to party `to` only (default:
        x's owner; "all" for every party); None at the others. The outputs are logits
        where the loss works on logits."""
        ctx = self._ctx(x)
        if to is None:
            if isinstance(x, mpc.SecretTensor):
                raise ValueError("predict: x is secret, so name who learns the predictions: "
                                 "to=<party id> or to='all'")
            to = owner
        if to != "all" and (isinstance(to, bool) or not isinstance(to, numbers.Integral)
                            or not 0 <= to < ctx.n_parties):
            raise ValueError(f"to must be a party id 0..{ctx.n_parties - 1} or 'all', "
                             f"got {to!r}")
        xs = self._secret(ctx, "x", x, owner)
        with evaluating(self):
            out = self(xs)
        return out.reveal() if to == "all" else out.reveal_to(int(to))


class DPModel(Model):
    """A Model trained with DP-SGD (nn.DPSGD, TF Privacy's parameters): its backward
    (nn.dp.per_microbatch_backward) leaves in each parameter what DPSGD clips: a Linear
    layer's factors with one example per microbatch, else per-microbatch gradients
    [m, *shape] (Linear and Conv2d layers; layers without parameters pass the gradient
    through). With another optimiser it trains as a plain Model (a non-private baseline).
    DPSGD(sampling="poisson") samples each step's rows secretly (nn.dp).

    Refused as TF Privacy refuses: num_microbatches that does not divide batch_size
    (at fit); and, at compile, before any data is shared, a layer with parameters that
    has no per-microbatch gradient (naming it).
    Example:
        model = nn.DPModel(nn.Linear(ctx, 30, 1))
        model.compile(optimizer=nn.DPSGD(l2_norm_clip=1.0, noise_multiplier=1.1,
                                         num_microbatches=32, learning_rate=0.15),
                      loss="binary_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=10, batch_size=32, validation_data=(xv, yv))
    """

    PER_MICROBATCH = PER_MICROBATCH_LAYERS  # layers with parameters and per-microbatch grads

    def __init__(self, *layers):
        super().__init__(*layers)
        self.num_microbatches = None
        self._per_microbatch = False
        self._inputs = []

    def _optimizer(self, optimizer):
        if not isinstance(optimizer, DPSGD):
            self._per_microbatch = False
            return super()._optimizer(optimizer)
        for i, layer in enumerate(self.layers):
            if layer.parameters() and not isinstance(layer, self.PER_MICROBATCH):
                raise TypeError(f"compile: layer {i} ({type(layer).__name__}) has parameters "
                                f"but no per-microbatch gradient for DP-SGD; supported: "
                                f"{', '.join(c.__name__ for c in self.PER_MICROBATCH)} and "
                                f"layers without parameters")
        m = optimizer.num_microbatches
        if m is not None:
            _positive_int("num_microbatches", m)
        optimizer.parameters = self.parameters()
        self._per_microbatch = True
        self.num_microbatches = m
        return optimizer

    def _check_batching(self, batch_size: int) -> None:
        m = self.num_microbatches if self._per_microbatch else None
        if m is not None and batch_size % m:
            raise ValueError(f"num_microbatches ({m}) must divide batch_size ({batch_size}), "
                             f"as TensorFlow Privacy requires")

    def forward(self, x):
        self._inputs = []
        for layer in self.layers:
            self._inputs.append(x)
            x = layer(x)
        return x

    def backward(self, grad, input_grad=True):
        if not self._per_microbatch:
            return super().backward(grad, input_grad=input_grad)
        return per_microbatch_backward(self.layers, self._inputs, grad,
                                       self.num_microbatches, input_grad)

    def _training_loss(self):
        return RowLoss(self.loss) if self._per_microbatch else self.loss


def _last_module(model):
    """The module that produces the model's output (through Sequentials and Graphs)."""
    while True:
        if isinstance(model, Sequential) and model.layers:
            model = model.layers[-1]
        elif isinstance(model, Graph) and model.nodes:
            out = model.output if model.output is not None else model.nodes[-1][0]
            model = next((m for name, m, _ in model.nodes if name == out), None)
        else:
            return model


def _one_hot_labels(name: str, labels, classes: int) -> np.ndarray:
    """The owner's integer labels [N] or [N, 1] as one-hot rows (checked)."""
    try:
        y = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of integer labels, got "
                        f"{type(labels).__name__} of {np.asarray(labels).dtype}") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise mpc.ShapeError(f"{name}: sparse_categorical_crossentropy takes integer labels "
                             f"[N], got shape {y.shape} (one-hot rows need "
                             f"loss='categorical_crossentropy')")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0) or \
            np.any(y >= classes):
        good = np.isfinite(y) & (y == np.round(y)) & (y >= 0) & (y < classes)
        bad = np.unique(y[~good])[:3]
        raise ValueError(f"{name}: labels must be integers 0..{classes - 1} (the model has "
                         f"{classes} outputs), got {bad.tolist()}")
    return np.eye(classes)[y.astype(np.int64)]
