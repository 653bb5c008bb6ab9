"""Week 1 — PyTorch: tensors to a digit classifier, and transfer learning.

Every later kata trains something, and every training loop is the same handful of lines.
This kata writes them once, by hand, on scikit-learn's 8x8 digits (1,797 images, 64 pixels
of 0..16, ten classes; `sklearn.datasets.load_digits()` ships with the library):

1. `mlp_forward`: a multi-layer perceptron from bare tensors, as `nn.Linear` computes it.
2. `sgd_step_`: what an optimizer's `step()` does to the parameters.
3. `fit_standardizer` / `standardize`: features with mean 0 and std 1, fit on TRAIN only.
4. `DigitsDataset` / `make_loader`: the `Dataset` / `DataLoader` pair that feeds batches.
5. `MLP`, `train_one_epoch`, `evaluate`: the model, the loop, the measurement.
6. `freeze_` / `transfer`: reuse a trained body for new classes, training only a new head.

Conventions: images are float32 [N, 64], labels int64 [N]; weights are in `nn.Linear`'s
layout [out, in] (so a layer computes `x @ W.T + b`); models return raw logits (no softmax,
no ReLU after the last layer: `F.cross_entropy` takes logits).

Must catch (the tests fail on each):
- no `zero_grad` (gradients pile up across batches);
- epoch loss averaged over batches instead of over samples;
- `evaluate` without `model.eval()` (the tests' model has Dropout);
- a standardizer fit on the test data, or a constant pixel giving std 0 and NaN;
- `freeze_` that leaves stale gradients (an optimizer step still moves the frozen body);
- `transfer` that re-initialises the pretrained body, or changes the pretrained model;
- a ReLU after the last layer, or weights used as [in, out].

Run time: `pytest katas/week1/test_pytorch.py` takes about 5 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def mlp_forward(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """A multi-layer perceptron from bare tensors: x [N, in] -> logits [N, out].

    Layer i computes `h @ weights[i].T + biases[i]`, with weights[i] in nn.Linear's layout
    [out_i, in_i] and biases[i] [out_i]. A ReLU follows every layer EXCEPT the last: the
    output is raw logits, which may be negative (a ReLU there would clip every negative
    logit to 0 and make those classes indistinguishable). One layer is plain logistic
    regression: no ReLU at all.

    Worked example, one layer, W = [[1., 0.], [0., 2.], [1., 1.]] ([out 3, in 2]), b = 0,
    x = [[1., -1.]]: the output is x @ W.T = [[1., -2., 0.]]. Reading W as [in, out]
    (x @ W) is a shape error here, but on a SQUARE layer it silently computes another
    function: the tests use both.

    Keeps x's dtype (float64 in, float64 out). `nn.Linear` and `F.linear` are forbidden
    here: write the matmul.
    """
    raise NotImplementedError


def sgd_step_(params: list[torch.Tensor], lr: float) -> None:
    """One step of plain gradient descent, in place: `p -= lr * p.grad`, then `p.grad = None`.

    Under `torch.no_grad()` (an update is not part of the graph; `p -= ...` on a leaf that
    requires grad raises otherwise). The update must change the tensor the caller holds:
    `p = p - lr * p.grad` only rebinds your loop variable and trains nothing. Setting
    `p.grad = None` afterwards is what `optimizer.zero_grad()` does: the next backward
    starts from nothing instead of adding to this step's gradient. A parameter whose
    `grad` is None (not used by the loss, or frozen) is skipped. Returns None.
    `torch.optim` is forbidden here.
    """
    raise NotImplementedError


def fit_standardizer(x_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (mean [F], std [F]) of the TRAINING split x_train [N, F], in its dtype.

    std is the population std (divide by N, `correction=0`), as scikit-learn's
    StandardScaler. A feature that never varies (std 0: digits' corner pixels are always
    0, and pixels 0, 32, 39 and 56 are constant on the training split) gets std 1, so it
    standardizes to 0 instead of 0 / 0 = NaN. Compute the variance as the mean of squared
    deviations from the mean: E[x^2] - E[x]^2 cancels catastrophically in float32 when a
    feature's mean is large against its spread (values around 1e4).

    Fit on the training split only: the test split is later standardized with THESE
    statistics (its own would leak information about the test set into the model).
    """
    raise NotImplementedError


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """`(x - mean) / std` with the statistics it is given (never recomputed from x).

    Worked example: mean [2., 0.], std [2., 1.], x = [[4., 3.]] -> [[1., 3.]], whatever
    the mean and std of x itself are.
    """
    raise NotImplementedError


class DigitsDataset(Dataset):
    """A map-style Dataset over aligned images x [N, 64] and labels y [N].

    x and y may be tensors or NumPy arrays (load_digits gives float64 pixels and int
    labels). `len(ds)` is N; `ds[i]` is the pair `(image float32 [64], label int64 0-dim)`,
    which the DataLoader's default collate stacks into float32 [B, 64] and int64 [B].
    x and y of different lengths raise ValueError.
    """

    def __init__(self, x, y):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader over `dataset` in batches of `batch_size`, the last one smaller when
    batch_size does not divide len(dataset) (`drop_last=False`: no sample is skipped).

    With shuffle=True the order comes from `generator=torch.Generator().manual_seed(seed)`,
    given to the DataLoader: the same seed gives the same order on every run, whatever else
    used torch's global random state (a model's initialisation, Dropout), and each new
    pass over the loader (each epoch) draws a new order from that generator. With
    shuffle=False the batches follow the dataset's order.
    """
    raise NotImplementedError


class MLP(nn.Module):
    """A classifier in two named parts, so that the body can be reused (see `transfer`).

    Args: in_features (64 pixels), hidden (the widths of the hidden layers), n_classes.

    Attributes (the tests read these):
        body: nn.Sequential of `nn.Linear(width_in, width), nn.ReLU()` per hidden width, in
              order, so its state_dict keys are body.0.weight, body.0.bias, body.2.weight, ...
        head: nn.Linear(hidden[-1], n_classes), with no activation after it.

    forward(x [N, in_features]) -> logits [N, n_classes] = head(body(x)).
    """

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (128, 64), n_classes: int = 10):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, loss_fn=F.cross_entropy) -> float:
    """One pass over `loader`, one optimizer step per batch; returns the epoch's mean loss.

    `model.train()` first (Dropout is active in training; the model may come from
    `evaluate`, in eval mode). Then per batch (xb, yb): `optimizer.zero_grad()`, logits =
    model(xb), loss = loss_fn(logits, yb) (a batch MEAN), `loss.backward()`,
    `optimizer.step()`. Without zero_grad every backward ADDS to the gradients of all the
    previous batches.

    The result is a Python float: the mean loss per SAMPLE, sum_b loss_b * n_b / N, where
    n_b is batch b's size. Worked example: batches of 4, 4 and 2 samples with mean losses
    1, 1 and 4 give (4 + 4 + 8) / 10 = 1.6, not the mean of the batch means, 2.0.
    """
    raise NotImplementedError


def evaluate(model: nn.Module, loader) -> tuple[float, float]:
    """(mean cross-entropy per sample, accuracy) of `model` over `loader`, as Python floats.

    `model.eval()` (Dropout off: in train mode it drops random units and the score is
    noisy and lower) and `torch.no_grad()` (no graph is built: nothing will call
    backward). The loss is `F.cross_entropy` summed over every sample, divided by the
    number of samples (batches may differ in size, as in `train_one_epoch`); accuracy is
    the fraction of samples whose arg-max logit is the label. The model is left in eval
    mode.
    """
    raise NotImplementedError


def freeze_(module: nn.Module) -> None:
    """Stop training every parameter of `module`, in place; returns None.

    Two things, both needed: `p.requires_grad_(False)` (no NEW gradients reach it) and
    `p.grad = None` (no OLD one is left: an optimizer steps every parameter whose .grad is
    not None, so a stale gradient from the last backward would still move the "frozen"
    weights, and momentum or weight decay would keep moving them).
    """
    raise NotImplementedError


def transfer(pretrained: MLP, n_new_classes: int) -> MLP:
    """A NEW MLP for `n_new_classes` that reuses what `pretrained` learned.

    Its body is a deep copy of `pretrained.body` (same weights, its own tensors:
    `copy.deepcopy`), frozen with `freeze_`; its head is a fresh
    `nn.Linear(hidden[-1], n_new_classes)` (trainable). The widths come from the pretrained
    body's Linear layers. `pretrained` is left exactly as it was: same weights, still
    trainable (freezing or training the new model must never reach it).

    Then `train_one_epoch` with an optimizer over ALL the new model's parameters trains
    only the head: the frozen body has no gradients, so the optimizer skips it.

    What to expect on digits: a body pretrained on 0-4 gives a head for 5-9 about 0.70-0.87
    test accuracy, less than a random frozen body (0.83-0.90) or training from scratch
    (0.97): features learned for 0-4 are specific to those classes. Transfer wins when the
    new task needs what the body learned: a parity head (odd/even) trained from 10 labels
    on a body pretrained on all 10 digits scores 0.74-0.86, a random body 0.54-0.67.
    """
    raise NotImplementedError
