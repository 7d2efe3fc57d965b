"""What grows when models grow: a grid of GPTs, power-law fits, iso-FLOP curves and memory arithmetic
(Chapter 7: Scaling).

- :func:`grid_shape`, :func:`lr_for_width`, :func:`train_grid`: a grid of GPTs of several sizes
  trained by the book's own loop (:func:`llmbook.train.train`) on the same data; each
  :class:`GridRun` keeps its learning curve (tokens, FLOPs, validation loss).
- :func:`fit_power_law`: ``L(x) = a·x^(-alpha) + c`` (or Kaplan's form without ``c``) fitted with
  :func:`scipy.optimize.curve_fit`, with a residual-bootstrap interval for ``alpha``.
- :func:`iso_flop`: for a compute budget C, the loss of every model that spent C FLOPs, a parabola
  in log N through them, and the loss-optimal size and tokens per parameter (Hoffmann et al. 2022).
- Memory: :func:`adamw_bytes_per_param` (mixed-precision AdamW), :func:`activation_bytes`
  (the saved activations of :class:`llmbook.models.GPT`, exact to the byte on the CPU), and
  :class:`SavedTensorMeter`, which counts what autograd keeps for the backward pass with
  :func:`torch.autograd.graph.saved_tensors_hooks`, peak included;
  :func:`checkpoint_blocks` turns on activation checkpointing.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from llmbook import validate
from llmbook.models import GPT, GPTConfig

__all__ = [
    "grid_shape",
    "lr_for_width",
    "GridRun",
    "train_run",
    "train_grid",
    "power_law",
    "PowerLawFit",
    "fit_power_law",
    "IsoFlop",
    "loss_at_flops",
    "iso_flop",
    "iso_flop_budgets",
    "training_flops",
    "gpu_days",
    "datasheet_peak_flops",
    "adamw_bytes_per_param",
    "activation_bytes",
    "SavedTensorMeter",
    "checkpoint_blocks",
    "planned_flops",
    "KAPLAN_ALPHA_N",
    "CHINCHILLA_TOKENS_PER_PARAM",
]

KAPLAN_ALPHA_N = 0.076  # Kaplan et al. 2020, L(N) = (N_c / N)^alpha_N, non-embedding N, trained to convergence
CHINCHILLA_TOKENS_PER_PARAM = 20.0  # Hoffmann et al. 2022: the compute-optimal D / N, roughly


# --------------------------------------------------------------------------- the grid


def grid_shape(n_layer: int, n_embd: int, vocab_size: int, block_size: int, head_dim: int = 16) -> GPTConfig:
    """The GPT of the grid with ``n_layer`` blocks of width ``n_embd``: heads of ``head_dim`` (one head
    when ``n_embd`` is narrower than two), no biases, no dropout (every run sees fresh windows of the text, so nothing needs regularising)."""
    validate.positive_int(n_embd, "n_embd")
    validate.positive_int(head_dim, "head_dim")
    n_head = max(1, n_embd // head_dim)
    if n_head > 1 and n_embd % head_dim:
        raise ValueError(
            f"n_embd={n_embd} is not a multiple of head_dim={head_dim}; pick a width that is (or one below head_dim)"
        )
    return GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0, bias=False)


def lr_for_width(n_embd: int, scale: float = 0.25) -> float:
    """The grid's learning-rate rule: ``scale / n_embd`` (narrower models
    take larger steps).

    Adam moves every weight by about the learning rate, and a layer's output
    sums ``n_embd`` such moves, so a rate proportional to ``1 / n_embd``
    keeps the change of each layer's output about the same at every width.
    ``0.25 / 128`` ≈ 2e-3 is Chapter 6's rate for its 128-wide GPT.

    >>> round(lr_for_width(64), 6)
    0.003906
    """
    validate.positive_int(n_embd, "n_embd")
    validate.finite_float(scale, "scale", low=0, low_inclusive=False)
    return scale / n_embd


@dataclass
class GridRun:
    """One trained model of the grid.

    ``params``: non-embedding parameters N (Kaplan's count); ``total_params``: all of them;
    ``flops_per_token``: :meth:`GPT.flops_per_token` for training (attention included);
    ``tokens``: D, the training tokens; ``flops``: ``flops_per_token * tokens``, the compute C;
    ``val_loss``: the final validation loss (nats per token) over ``final_eval_tokens`` tokens;
    ``curve_tokens`` / ``curve_loss``: the validation loss along the run (the learning curve).
    """

    n_layer: int
    n_embd: int
    params: int
    total_params: int
    flops_per_token: float
    tokens: int
    lr: float
    val_loss: float
    seconds: float
    curve_tokens: list[int] = field(default_factory=list)
    curve_loss: list[float] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return self.flops_per_token * self.tokens

    @property
    def flops_6nd(self) -> float:
        """Kaplan's estimate of the compute: 6 FLOPs per non-embedding parameter per token."""
        return 6.0 * self.params * self.tokens

    @property
    def curve_flops(self) -> list[float]:
        return [self.flops_per_token * t for t in self.curve_tokens]


def train_run(
    config: GPTConfig,
    batcher,
    tokens: int,
    batch_size: int,
    lr: float | None = None,
    evals: int = 8,
    eval_steps: int = 4,
    final_eval_batches: int = 20,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> GridRun:
    """Train a fresh GPT of ``config`` on ``tokens`` training tokens (rounded to whole steps of
    ``batch_size`` windows) with :func:`llmbook.train.train` and return its :class:`GridRun`.

    The schedule is the book's: warm-up over the first 10% of the steps, cosine decay to lr / 10 at
    the last step, so every run ends annealed whatever its length. The validation loss is measured
    ``evals`` times along the way (the learning curve) and once more at the end on
    ``final_eval_batches`` batches, so that the final numbers the fits use are not noisy.
    """
    from llmbook import runtime
    from llmbook.train import TrainConfig, evaluate, train

    validate.positive_int(tokens, "tokens")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_int(evals, "evals")
    lr = lr_for_width(config.n_embd) if lr is None else lr
    steps = max(1, round(tokens / (batch_size * config.block_size)))
    runtime.seed_everything(seed)
    model = GPT(config)
    train_config = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=max(1, steps // 10),
        eval_interval=max(1, steps // evals),
        eval_steps=eval_steps,
        eval_batch_size=max(batch_size, 32),
        log_interval=max(1, steps // evals),
        seed=seed,
        progress=False,
    )
    start = time.perf_counter()
    result = train(model, batcher, train_config, device=device)
    seconds = time.perf_counter() - start
    step_tokens = batch_size * config.block_size
    final = evaluate(model, batcher, final_eval_batches, max(batch_size, 32), device, seed=12345, splits=("val",))
    return GridRun(
        n_layer=config.n_layer,
        n_embd=config.n_embd,
        params=model.num_params(non_embedding=True),
        total_params=model.num_params(),
        flops_per_token=float(model.flops_per_token(config.block_size, training=True)),
        tokens=result.steps * step_tokens,
        lr=lr,
        val_loss=final["val"],
        seconds=seconds,
        curve_tokens=[s * step_tokens for s in result.history["step"] if s > 0],
        curve_loss=[v for s, v in zip(result.history["step"], result.history["val_loss"]) if s > 0],
    )


def train_grid(
    shapes: Sequence[tuple[int, int]],
    batcher,
    vocab_size: int,
    tokens: int | Sequence[int],
    batch_size: int,
    progress: bool = True,
    **options,
) -> list[GridRun]:
    """Train one GPT per ``(n_layer, n_embd)`` in ``shapes`` (see :func:`train_run` for ``options``).

    ``tokens`` is the training tokens of every run, or one number per shape. The context is the
    batcher's ``block_size``; the learning rate follows :func:`lr_for_width` unless ``lr`` is given.
    """
    from tqdm.auto import tqdm

    if not shapes:
        raise ValueError("shapes is empty; give at least one (n_layer, n_embd) pair")
    budgets = [tokens] * len(shapes) if isinstance(tokens, int) else list(tokens)
    if len(budgets) != len(shapes):
        raise ValueError(f"tokens has {len(budgets)} entries for {len(shapes)} shapes; give one per shape or one int")
    runs = []
    bar = tqdm(list(zip(shapes, budgets)), disable=not progress, desc="grid")
    for (n_layer, n_embd), run_tokens in bar:
        bar.set_postfix(model=f"{n_layer}x{n_embd}", tokens=f"{run_tokens:,}")
        config = grid_shape(n_layer, n_embd, vocab_size, batcher.block_size)
        runs.append(train_run(config, batcher, run_tokens, batch_size, **options))
    return runs


# --------------------------------------------------------------------------- power laws


def power_law(x, a, alpha, c=0.0):
    """``a * x**(-alpha) + c``."""
    return a * np.power(x, -alpha) + c


@dataclass
class PowerLawFit:
    """``L(x) = a·x^(-alpha) + c`` (``c = 0`` for Kaplan's form), with a bootstrap interval for ``alpha``."""

    a: float
    alpha: float
    c: float
    alpha_low: float
    alpha_high: float
    irreducible: bool
    rmse: float  # root-mean-square error of log L, the quantity fitted
    bootstrap_failures: int = 0

    def __call__(self, x):
        return power_law(np.asarray(x, dtype=float), self.a, self.alpha, self.c)

    def __str__(self) -> str:
        form = f"{self.a:.3g}·x^-{self.alpha:.3f}" + (f" + {self.c:.3f}" if self.irreducible else "")
        return f"L = {form}; 95% interval of alpha {self.alpha_low:.3f} to {self.alpha_high:.3f}"


def _fit_once(log_x, log_y, irreducible: bool, x0: float, start=None):
    from scipy.optimize import curve_fit
    from scipy.special import expit

    if not irreducible:  # log L = log a - alpha log x: a straight line, fitted by least squares
        slope, intercept = np.polyfit(log_x, log_y, 1)
        return math.exp(intercept), -slope, 0.0
    y = np.exp(log_y)
    scaled = np.exp(log_x) / x0  # conditioning: x near 1
    c_max = 0.999 * float(y.min())  # the floor lies below every loss

    def model(s, log_a, alpha, u):  # c = c_max * sigmoid(u) keeps 0 < c < c_max without bounds
        return np.log(np.exp(log_a) * np.power(s, -alpha) + c_max / (1 + np.exp(-u)))

    a, alpha, c = start if start is not None else (float(y.max()) - 0.5 * c_max, 0.3, 0.5 * c_max)
    if start is not None:  # a bootstrap refit starts from the fit to the data: fewer iterations
        a = a / x0**alpha
    c = min(max(c, 1e-3 * c_max), 0.99 * c_max)
    guess = (math.log(max(a, 1e-6)), alpha, math.log(c / (c_max - c)))
    (log_a, alpha, u), _ = curve_fit(model, scaled, log_y, p0=guess, method="lm", maxfev=5000)
    c = c_max * float(expit(u))
    return math.exp(log_a) * x0**alpha, float(alpha), float(c)


def _points(x, y, need: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float arrays, refused unless they are ``need`` or more positive, finite pairs."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be two lists of the same length, got shapes {x.shape} and {y.shape}")
    if len(x) < need:
        what = "a, alpha and c" if need == 4 else "a and alpha"
        raise ValueError(f"fitting {what} needs at least {need} points, got {len(x)}; train more sizes")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError(f"x and y must be finite and > 0, got x={x.tolist()} and y={y.tolist()}")
    return x, y


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    irreducible: bool = True,
    bootstrap: int = 300,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``y = a·x^(-alpha) + c`` (``irreducible=True``) or Kaplan's form
    ``y = a·x^(-alpha)``.

    The fit minimises the squared error of ``log y`` (relative errors: every
    point counts the same, whatever its loss). The interval for ``alpha`` is
    a residual bootstrap: ``bootstrap`` times, add the fit's residuals,
    resampled with replacement, to the fitted curve and fit again; the
    interval holds the middle 95% of the refitted exponents. With few points
    it is wide, as it should be.

    >>> x = np.array([1e3, 3e3, 1e4, 3e4, 1e5]); y = 5 * x**-0.3 + 1.2
    >>> fit = fit_power_law(x, y, bootstrap=0)
    >>> round(fit.alpha, 3), round(fit.c, 3)
    (0.3, 1.2)
    """
    x, y = _points(x, y, need=4 if irreducible else 3)
    validate.nonnegative_int(bootstrap, "bootstrap")
    log_x, log_y = np.log(x), np.log(y)
    x0 = float(np.exp(log_x.mean()))
    with warnings.catch_warnings():
        # curve_fit's covariance warning: the bootstrap gives the interval
        warnings.simplefilter("ignore")
        a, alpha, c = _fit_once(log_x, log_y, irreducible, x0)
        fitted = np.log(power_law(x, a, alpha, c))
        residuals = log_y - fitted
        rng = np.random.default_rng(seed)
        alphas, failures = [], 0
        for _ in range(bootstrap):
            sample = fitted + rng.choice(residuals, size=len(residuals), replace=True)
            try:
                alphas.append(_fit_once(log_x, sample, irreducible, x0, start=(a, alpha, c))[1])
            except (RuntimeError, ValueError):  # no convergence on this resample
                failures += 1
    low, high = np.percentile(alphas, [2.5, 97.5]) if alphas else (math.nan, math.nan)
    rmse = float(np.sqrt(np.mean(residuals**2)))
    return PowerLawFit(a, alpha, c, float(low), float(high), irreducible, rmse, failures)


# --------------------------------------------------------------------------- iso-FLOP


def loss_at_flops(run: GridRun, flops: float) -> float | None:
    """The validation loss of ``run``'s learning curve after ``flops`` FLOPs of training, interpolated
    linearly in log FLOPs between evaluations; None outside the curve."""
    xs = np.log(np.asarray(run.curve_flops, dtype=float))
    if len(xs) == 0 or not (xs[0] <= math.log(flops) <= xs[-1]):
        return None
    return float(np.interp(math.log(flops), xs, np.asarray(run.curve_loss, dtype=float)))


@dataclass
class IsoFlop:
    """One compute budget of an iso-FLOP analysis: the models that reached ``flops``, their losses there, and
    the optimum of a parabola in log N through them (Hoffmann et al.'s approach 2)."""

    flops: float
    params: list[int]
    losses: list[float]
    tokens: list[float]
    optimal_params: float
    optimal_tokens: float
    optimal_loss: float
    interior: bool  # False: the parabola has no minimum inside the sizes trained; the best point is used

    @property
    def tokens_per_param(self) -> float:
        return self.optimal_tokens / self.optimal_params


def _enough_runs(count: int, flops: float) -> None:
    if count < 3:
        raise ValueError(
            f"only {count} runs reached {flops:.3g} FLOPs inside their learning curves; an iso-FLOP "
            "parabola needs 3: pick a budget that more sizes cover"
        )


def iso_flop(runs: Sequence[GridRun], flops: float) -> IsoFlop:
    """For the budget ``flops``: every run's loss after that much compute
    (from its learning curve), a parabola ``p·(log N)² + q·log N + r``
    through the best of them and up to two neighbours on each side (far
    from the minimum the curve is not a parabola), and its minimum: the
    loss-optimal N.

    The tokens at the optimum are ``flops / flops_per_token``, interpolated
    in log-log between the sizes. When the parabola opens downwards or its
    minimum lies outside the sizes, the best run is the optimum
    (``interior=False``): the budget is too small or too large for the grid.
    """
    validate.finite_float(flops, "flops", low=0, low_inclusive=False)
    points = [(run, loss_at_flops(run, flops)) for run in sorted(runs, key=lambda r: r.params)]
    points = [(run, loss) for run, loss in points if loss is not None]
    _enough_runs(len(points), flops)
    log_n = np.log([run.params for run, _ in points])
    losses = np.array([loss for _, loss in points])
    log_d = np.log([flops / run.flops_per_token for run, _ in points])
    # the parabola: through the best size and up to 2 neighbours each side
    lowest = int(np.argmin(losses))
    first = min(max(0, lowest - 2), len(points) - 3)
    near = slice(first, max(first + 3, min(len(points), lowest + 3)))
    p, q, _ = np.polyfit(log_n[near], losses[near], 2)
    interior = bool(p > 0 and log_n[near][0] < -q / (2 * p) < log_n[near][-1])
    best = -q / (2 * p) if interior else log_n[int(np.argmin(losses))]
    loss_best = float(np.polyval([p, q, _], best)) if interior else float(losses.min())
    tokens_best = float(np.exp(np.interp(best, log_n, log_d)))
    return IsoFlop(
        flops=float(flops),
        params=[run.params for run, _ in points],
        losses=losses.tolist(),
        tokens=np.exp(log_d).tolist(),
        optimal_params=float(np.exp(best)),
        optimal_tokens=tokens_best,
        optimal_loss=loss_best,
        interior=bool(interior),
    )


def iso_flop_budgets(runs: Sequence[GridRun], count: int = 3, min_runs: int = 4) -> list[float]:
    """``count`` compute budgets, evenly spaced in log, spanning the range where at least ``min_runs``
    learning curves of ``runs`` are defined (so that every budget has models on both sides of its optimum
    to compare)."""
    validate.positive_int(count, "count")
    validate.positive_int(min_runs, "min_runs", minimum=3)
    spans = [(run.curve_flops[0], run.curve_flops[-1]) for run in runs if run.curve_flops]
    if not spans:
        raise ValueError("no run has a learning curve; train with evals >= 1")
    grid = np.geomspace(min(lo for lo, _ in spans), max(hi for _, hi in spans), 400)
    covered = [c for c in grid if sum(lo <= c <= hi for lo, hi in spans) >= min_runs]
    if not covered:
        raise ValueError(
            f"no compute budget is reached by {min_runs} runs' learning curves; train the small models longer "
            "(more tokens) or lower min_runs"
        )
    return np.geomspace(covered[0], covered[-1], count).tolist() if count > 1 else [covered[-1]]


# --------------------------------------------------------------------------- compute and memory arithmetic


def datasheet_peak_flops(gpu: str) -> float:
    """The data-sheet peak (dense bf16, fp16 on the T4) of a GPU named ``gpu`` ("A100", "H100", "T4", ...),
    from the table :func:`llmbook.runtime.peak_flops` uses for the GPU it runs on.

    >>> f"{datasheet_peak_flops('A100'):.3g}"
    '3.12e+14'
    """
    from llmbook.runtime import _GPU_PEAK_FLOPS

    for key, flops in _GPU_PEAK_FLOPS.items():
        if key.lower() in gpu.lower():
            return flops
    raise ValueError(f"no data sheet for GPU {gpu!r}; known: {', '.join(_GPU_PEAK_FLOPS)}")


def training_flops(params: float, tokens: float) -> float:
    """Kaplan's estimate of a training run's compute: ``6 N D`` (2 FLOPs per parameter per token forward,
    4 backward).

    >>> f"{training_flops(175e9, 300e9):.3g}"
    '3.15e+23'
    """
    validate.finite_float(params, "params", low=0)
    validate.finite_float(tokens, "tokens", low=0)
    return 6.0 * params * tokens


def gpu_days(flops: float, peak_flops: float, mfu: float) -> float:
    """Days one GPU of ``peak_flops`` FLOP/s needs for ``flops`` at model-FLOPs utilisation ``mfu`` (0..1)."""
    validate.finite_float(flops, "flops", low=0)
    validate.finite_float(peak_flops, "peak_flops", low=0, low_inclusive=False)
    validate.finite_float(mfu, "mfu", low=0, low_inclusive=False, high=1, hint="a fraction, e.g. 0.4 for 40%")
    return flops / (peak_flops * mfu) / 86400.0


def adamw_bytes_per_param(mixed_precision: bool = True) -> dict[str, int]:
    """Bytes of training state per parameter for AdamW, item by item (activations not included).

    Mixed precision (Micikevicius et al. 2018; the ZeRO paper's count): 16-bit weights and gradients
    (2 + 2), a float32 master copy of the weights (4) and Adam's two float32 moments (4 + 4): 16 bytes.
    Plain float32: weights, gradients and the two moments, 4 bytes each: also 16.

    >>> sum(adamw_bytes_per_param().values())
    16
    """
    if mixed_precision:
        return {
            "weights (16-bit)": 2,
            "gradients (16-bit)": 2,
            "master weights (fp32)": 4,
            "Adam first moment m (fp32)": 4,
            "Adam second moment v (fp32)": 4,
        }
    return {
        "weights (fp32)": 4,
        "gradients (fp32)": 4,
        "Adam first moment m (fp32)": 4,
        "Adam second moment v (fp32)": 4,
    }


def activation_bytes(config: GPTConfig, batch_size: int, seq_len: int, bytes_per_number: int = 4) -> int:
    """Bytes that :class:`llmbook.models.GPT` saves for the backward pass in float32 on the CPU, from the
    shapes of what each operation keeps (checked to the byte by ``tests/test_scaling.py``).

    Per block and token: the input and output of each LayerNorm (4d) and their mean and 1/std (4),
    q, k and v (3d), the attention output (d) and one log-sum-exp per head (H: the fused attention
    keeps it instead of the T×T matrix), the MLP's 4d-wide input and output of GELU (8d):
    ``16d + H + 4`` numbers. Outside the blocks: the final LayerNorm (2d + 2), the log-softmax (V),
    the token ids and targets (int64), the positions (T int64) and the loss (one number).
    """
    B = validate.positive_int(batch_size, "batch_size")
    T = validate.positive_int(seq_len, "seq_len")
    d, H, L, V = config.n_embd, config.n_head, config.n_layer, config.vocab_size
    per_token = L * (16 * d + H + 4) * bytes_per_number + (2 * d + 2 + V) * bytes_per_number + 2 * 8
    return B * T * per_token + 8 * T + bytes_per_number


class _Saved:
    """What a pack hook hands autograd: the tensor, and a note to the meter when autograd lets go of it."""

    __slots__ = ("tensor", "meter", "key")

    def __init__(self, tensor, meter, key):
        self.tensor, self.meter, self.key = tensor, meter, key

    def __del__(self):
        self.meter._release(self.key)


class SavedTensorMeter:
    """Count the bytes autograd keeps for the backward pass (a CPU has no memory-statistics API).

    Inside ``with SavedTensorMeter(exclude=model.parameters()) as meter:`` every tensor saved for
    backward passes through :func:`torch.autograd.graph.saved_tensors_hooks`; the meter counts each
    storage once, however many operations save it, and forgets it when autograd frees it (during
    backward). ``meter.current`` is what is held now, ``meter.peak`` the most held at any moment
    (run ``backward()`` inside the block to include the recomputation of activation checkpointing).
    Parameters (``exclude``) are not activations and are not counted.
    """

    def __init__(self, exclude=()):
        self._exclude = {p.untyped_storage().data_ptr() for p in exclude}
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor):
        key = tensor.untyped_storage().data_ptr()
        if key in self._exclude or tensor.device.type == "meta":
            return tensor
        if key not in self._refs:
            self._refs[key], self._sizes[key] = 0, tensor.untyped_storage().nbytes()
            self.current += self._sizes[key]
            self.peak = max(self.peak, self.current)
        self._refs[key] += 1
        return _Saved(tensor, self, key)

    @staticmethod
    def _unpack(packed):
        return packed.tensor if isinstance(packed, _Saved) else packed

    def _release(self, key):
        if key in self._refs:
            self._refs[key] -= 1
            if self._refs[key] == 0:
                del self._refs[key]
                self.current -= self._sizes.pop(key)

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)


def checkpoint_blocks(model: GPT, enabled: bool = True) -> GPT:
    """Activation checkpointing for every block of ``model`` (in place; returns it).

    A checkpointed block keeps only its input during the forward pass and runs its forward again
    during backward to rebuild what the gradient needs: memory of one block's activations instead of
    all of them, for about a third more compute. Uses :func:`torch.utils.checkpoint.checkpoint` with
    ``use_reentrant=True``, the variant whose forward saves its input through autograd's saved tensors
    (so :class:`SavedTensorMeter` sees it). ``enabled=False`` restores the plain blocks.
    """
    from torch.utils.checkpoint import checkpoint

    if not isinstance(model, nn.Module) or not hasattr(model, "blocks"):
        raise TypeError(f"checkpoint_blocks needs a model with .blocks (a GPT), got {type(model).__name__}")
    for block in model.blocks:
        if enabled and not hasattr(block, "_plain_forward"):
            block._plain_forward = block.forward

            def forward(x, mask=None, is_causal=False, need_weights=False, kv_cache=None, _block=block):
                def run(hidden):
                    return _block._plain_forward(hidden, mask, is_causal, need_weights)

                if kv_cache is not None:
                    raise ValueError(
                        "activation checkpointing is for training; generate with kv_cache=False or call "
                        "checkpoint_blocks(model, enabled=False) first"
                    )
                if not torch.is_grad_enabled():
                    return run(x)
                return checkpoint(run, x, use_reentrant=True)

            block.forward = forward
        elif not enabled and hasattr(block, "_plain_forward"):
            block.forward = block._plain_forward
            del block._plain_forward
    return model


# --------------------------------------------------------------------------- the chapter's own budget


def planned_flops(sizes: dict, vocab_size: int) -> float:
    """The FLOPs Chapter 7's experiments plan at the sizes ``sizes`` (a row
    of its SIZES table).

    Training: every grid shape on ``tokens`` tokens, the two smallest once
    more on the third model's compute (the chapter's iso-FLOP runs), and
    the shorter runs of the data sweep. Evaluation: forward passes only (a
    third of a training step's FLOPs) of ``max(batch_size, 32)`` windows,
    ``evals`` times on both splits plus the final ``final_eval_batches``;
    counted twice, an upper bound that covers the evaluations of the data
    sweep and of the two longer runs. :mod:`llmbook.budget` counts the
    chapter with it.
    """
    validate.positive_int(vocab_size, "vocab_size")
    T = validate.positive_int(sizes["block_size"], "block_size")

    def flops_per_token(shape) -> float:
        with torch.device("meta"):  # the sizes are all the arithmetic needs: no memory
            return float(GPT(grid_shape(*shape, vocab_size, T)).flops_per_token(T))

    per_token = [flops_per_token(shape) for shape in sizes["shapes"]]
    train = sum(per_token) * sizes["tokens"] + 2 * per_token[2] * sizes["tokens"]
    train += flops_per_token(sizes["data_shape"]) * sum(sizes["data_tokens"][:-1])
    eval_tokens = (2 * sizes["evals"] * sizes["eval_steps"] + 2 + sizes["final_eval_batches"]) * (
        max(sizes["batch_size"], 32) * T
    )
    evals = sum(f / 3 * eval_tokens for f in per_token) * 2
    return train + evals
