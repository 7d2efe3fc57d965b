"""Chapter 10: Challenges and outlook, measured on the book's own models.

Small, exact tools for the chapter's experiments:

- compute: :func:`training_flops` (6·N·D) and :func:`accelerator_days`;
- bias: :func:`weat_effect_size` and :func:`weat_test` (Caliskan et al. 2017), with a permutation p-value;
- compression: :func:`quantize_per_channel` (symmetric int8, one scale per output row),
  :class:`Int8Linear` (weight-only int8 linear layer) and :func:`quantize_linear_layers`;
  knowledge distillation (Hinton et al. 2015): :func:`distillation_loss` and :class:`DistillationStudent`
  (a student that the book's training loop trains on a teacher's softened probabilities);
- calibration: :func:`calibration_bins` (expected calibration error and a reliability table);
- interpretability: :func:`hidden_states` (the residual stream after each block of a GPT),
  :func:`logit_lens` (each of them decoded by the output head) and :func:`linear_probe`;
  :func:`attention_from_last` and :func:`gradient_x_input` (attention against attribution, Jain & Wallace 2019);
- privacy: :func:`plant_canaries`, :func:`candidate_log_likelihoods`, :func:`canary_rank` and
  :func:`exposure` (Carlini et al. 2019);
- data: :func:`shingles`, :func:`jaccard` and :func:`minhash_signatures` for near-duplicate detection.

>>> training_flops(175e9, 300e9)
3.15e+23
>>> exposure(rank=1, n_candidates=1024)
10.0
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmbook import runtime, validate

__all__ = [
    "training_flops",
    "accelerator_days",
    "weat_effect_size",
    "weat_test",
    "WEATResult",
    "quantize_per_channel",
    "Int8Linear",
    "quantize_linear_layers",
    "model_bytes",
    "distillation_loss",
    "DistillationStudent",
    "calibration_bins",
    "Calibration",
    "hidden_states",
    "logit_lens",
    "linear_probe",
    "attention_from_last",
    "gradient_x_input",
    "plant_canaries",
    "candidate_log_likelihoods",
    "canary_rank",
    "exposure",
    "shingles",
    "jaccard",
    "minhash_signatures",
]


# --------------------------------------------------------------------------- compute


def training_flops(params: float, tokens: float) -> float:
    """Training compute of a dense Transformer: about 6 FLOPs per parameter per token (2 forward, 4 backward)."""
    params = validate.finite_float(params, "params")
    tokens = validate.finite_float(tokens, "tokens")
    if params <= 0 or tokens <= 0:
        raise ValueError(f"params and tokens must be positive, got params={params}, tokens={tokens}")
    return 6.0 * params * tokens


def accelerator_days(flops: float, flops_per_second: float) -> float:
    """Days of one accelerator sustaining ``flops_per_second`` (peak times utilisation) to do ``flops``."""
    flops = validate.finite_float(flops, "flops")
    rate = validate.finite_float(flops_per_second, "flops_per_second")
    if flops < 0 or rate <= 0:
        raise ValueError(
            f"flops must be >= 0 and flops_per_second > 0, got flops={flops}, flops_per_second={rate}; "
            "pass the sustained rate, e.g. peak * 0.3"
        )
    return flops / rate / 86_400


# --------------------------------------------------------------------------- WEAT


def _unit_rows(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a 2-d array of at least 2 word vectors (n, d), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values; pass finite word vectors")
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"{name} holds a zero vector; cosine similarity is undefined for it")
    return x / norms


def _association(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """s(w, A, B) = mean cos(w, a) − mean cos(w, b), for each row w of W (unit rows)."""
    return (W @ A.T).mean(1) - (W @ B.T).mean(1)


def weat_effect_size(X, Y, A, B) -> float:
    """WEAT's effect size (Caliskan et al. 2017): how much more target set X than Y is associated with
    attribute set A than B, in pooled standard deviations of the association of all targets.

    ``X, Y`` (targets) and ``A, B`` (attributes) are arrays of word vectors, one row per word. With
    s(w) = mean_a cos(w, a) − mean_b cos(w, b), the effect size is
    (mean_{x∈X} s(x) − mean_{y∈Y} s(y)) / std_{w∈X∪Y} s(w) (sample standard deviation), between −2 and 2.
    """
    X, Y, A, B = (_unit_rows(v, n) for v, n in ((X, "X"), (Y, "Y"), (A, "A"), (B, "B")))
    _same_width(X, Y, A, B)
    sx, sy = _association(X, A, B), _association(Y, A, B)
    return float((sx.mean() - sy.mean()) / torch.cat([sx, sy]).std(unbiased=True))


def _same_width(*sets: torch.Tensor) -> None:
    widths = {s.shape[1] for s in sets}
    if len(widths) != 1:
        raise ValueError(f"all word vectors must have the same width; got widths {sorted(widths)}")


@dataclass
class WEATResult:
    effect_size: float
    p_value: float  # one-sided: the share of equal-size re-partitions of X ∪ Y with a statistic ≥ the observed
    statistic: float  # sum_x s(x) − sum_y s(y)
    permutations: int


def weat_test(X, Y, A, B, permutations: int = 10_000, seed: int = 0) -> WEATResult:
    """WEAT's effect size and its one-sided permutation p-value.

    The test statistic is sum_{x∈X} s(x) − sum_{y∈Y} s(y); the p-value is the share of random
    re-partitions of X ∪ Y into two sets of the sizes of X and Y whose statistic is at least the observed
    one (the observed partition counted once, so p is never 0).
    """
    permutations = validate.positive_int(permutations, "permutations")
    Xu, Yu, Au, Bu = (_unit_rows(v, n) for v, n in ((X, "X"), (Y, "Y"), (A, "A"), (B, "B")))
    _same_width(Xu, Yu, Au, Bu)
    s = torch.cat([_association(Xu, Au, Bu), _association(Yu, Au, Bu)])
    n_x = Xu.shape[0]
    observed = float(s[:n_x].sum() - s[n_x:].sum())
    generator = torch.Generator().manual_seed(seed)
    orders = torch.stack([torch.randperm(len(s), generator=generator) for _ in range(permutations)])
    shuffled = s[orders]  # (permutations, n)
    stats = shuffled[:, :n_x].sum(1) - shuffled[:, n_x:].sum(1)
    p_value = (1 + int((stats >= observed - 1e-12).sum())) / (permutations + 1)
    return WEATResult(weat_effect_size(X, Y, A, B), p_value, observed, permutations)


# --------------------------------------------------------------------------- int8 weight-only quantization


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization with one scale per output channel (row) of a weight matrix.

    scale_i = max_j |W_ij| / 127 (1 for an all-zero row); q = round(W / scale) clamped to [−127, 127].
    Returns ``(q, scale)``: q int8 of W's shape, scale float32 of shape (rows,); W ≈ q · scale[:, None].
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(
            "quantize_per_channel needs a 2-d floating-point weight matrix "
            f"(out_features, in_features), got {type(weight).__name__}"
            + (f"{tuple(weight.shape)}" if isinstance(weight, torch.Tensor) else "")
        )
    if not torch.isfinite(weight).all():
        raise ValueError("the weight holds NaN or inf values; quantize a finite one")
    w = weight.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 with one float32 scale per output row.

    Weight-only quantization: the memory of the weight shrinks about 4×, the activations stay float. The
    forward pass dequantizes the weight (q · scale) and runs a float matrix multiply. With ``use_kernel=True``
    (CPU, float32 inputs) it calls PyTorch's int8 weight-only kernel instead (``torch._weight_int8pack_mm``,
    the one torchao uses), which reads the int8 weight directly; the two agree up to float rounding (the
    tests check it), but on CPUs without fast int8 instructions the kernel is much slower, so it is off by
    default.
    """

    use_kernel: bool = False

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Int8Linear wraps an nn.Linear, got {type(linear).__name__}")
        q, scale = quantize_per_channel(linear.weight)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:  # the dequantized weight, for code that reads .weight
        return self.q.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = getattr(torch, "_weight_int8pack_mm", None)
        if self.use_kernel and kernel is not None and x.device.type == "cpu" and x.dtype == torch.float32:
            out = kernel(x.reshape(-1, self.in_features), self.q, self.scale).reshape(*x.shape[:-1], -1)
            return out if self.bias is None else out + self.bias
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize_linear_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by an :class:`Int8Linear` (the original is unchanged)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_linear_layers needs an nn.Module, got {type(model).__name__}")
    quantized = copy.deepcopy(model)
    for module in list(quantized.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    return quantized


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers, each distinct tensor counted once (tied weights once)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor is None or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


# --------------------------------------------------------------------------- knowledge distillation


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Knowledge distillation's loss (Hinton et al. 2015), averaged over the positions whose target counts.

    (1 − α) · CE(student, targets) + α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)).

    Dividing both models' logits by the temperature T > 1 softens the teacher's distribution, so the
    student also learns how the teacher ranks the wrong tokens; the factor T² keeps the gradient of the
    soft term as large as that of the hard one when T changes. ``alpha=0`` is plain training on the
    text, ``alpha=1`` training on the teacher alone. Logits are (..., V), targets (...) with
    ``ignore_index`` for positions that count in neither term.
    """
    temperature = validate.finite_float(temperature, "temperature", low=0, low_inclusive=False, hint="e.g. 2.0")
    alpha = validate.finite_float(alpha, "alpha", low=0, high=1, hint="the weight of the teacher's term, 0 to 1")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student and teacher logits must have the same shape "
            f"(..., V), got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}; both models must share "
            "the tokenizer"
        )
    if targets.shape != student_logits.shape[:-1]:
        raise ValueError(
            "targets must have the logits' shape without the vocabulary, "
            f"{tuple(student_logits.shape[:-1])}; "
            f"got {tuple(targets.shape)}"
        )
    vocab = student_logits.shape[-1]
    student, teacher = student_logits.reshape(-1, vocab).float(), teacher_logits.reshape(-1, vocab).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    if not bool(keep.any()):
        raise ValueError(f"all targets are ignore_index ({ignore_index}): no loss")
    student, teacher, targets = student[keep], teacher[keep], targets[keep]
    hard = F.cross_entropy(student, targets)
    log_p_teacher = F.log_softmax(teacher.detach() / temperature, dim=-1)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    soft = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()  # KL per position, mean
    return (1 - alpha) * hard + alpha * temperature**2 * soft


class DistillationStudent(nn.Module):
    """A student model trained on a teacher's softened probabilities by the book's own loop.

    ``forward(idx, targets)`` returns the student's ``(logits, loss)`` like a GPT, so
    :func:`llmbook.train.train` trains it unchanged. In training mode the loss is
    :func:`distillation_loss` against the teacher's logits for the same batch; in evaluation mode it is the
    student's plain cross-entropy, so the validation losses that ``train`` records compare with those of a
    student trained without a teacher. The teacher is a frozen copy kept outside the module's parameters
    (the optimizer never sees it), always in evaluation mode, moved to the batch's device when needed.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5):
        super().__init__()
        for name, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, nn.Module):
                raise TypeError(f"{name} must be an nn.Module (a llmbook GPT), got {type(model).__name__}")
        s_vocab = getattr(getattr(student, "config", None), "vocab_size", None)
        t_vocab = getattr(getattr(teacher, "config", None), "vocab_size", None)
        if s_vocab is not None and t_vocab is not None and s_vocab != t_vocab:
            raise ValueError(
                f"the student's vocab_size ({s_vocab}) differs from the teacher's ({t_vocab}); "
                "distillation needs one tokenizer for both"
            )
        self.temperature = validate.finite_float(temperature, "temperature", low=0, low_inclusive=False)
        self.alpha = validate.finite_float(alpha, "alpha", low=0, high=1)
        self.student = student
        frozen = copy.deepcopy(teacher).eval().requires_grad_(False)
        self._teacher = [frozen]  # a list: not a submodule, so no parameters, state_dict or .train() reach it

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @property
    def config(self):  # the student's (train() reads block_size from it)
        return self.student.config

    def flops_per_token(self, context: int | None = None, training: bool = True) -> float:
        """The student's FLOPs per token plus, in training, the teacher's forward pass."""
        own = self.student.flops_per_token(context, training=training)
        return own + (self.teacher.flops_per_token(context, training=False) if training else 0)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple:
        if targets is None or not self.training:
            return tuple(self.student(idx, targets)[:2])
        logits = self.student(idx)[0]
        teacher = self.teacher
        if next(teacher.parameters()).device != idx.device:
            teacher = self._teacher[0] = teacher.to(idx.device)
        with torch.no_grad():
            teacher_logits = teacher(idx)[0]
        return logits, distillation_loss(logits, teacher_logits, targets, self.temperature, self.alpha)


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    ece: float  # expected calibration error: sum_b (n_b / n) |accuracy_b − confidence_b|
    confidence: np.ndarray  # mean confidence per bin (NaN for an empty bin)
    accuracy: np.ndarray  # accuracy per bin (NaN for an empty bin)
    counts: np.ndarray  # predictions per bin
    edges: np.ndarray  # the n_bins + 1 bin edges, 0 to 1


def calibration_bins(confidences, correct, n_bins: int = 10) -> Calibration:
    """Reliability table and expected calibration error (Guo et al. 2017) with equal-width bins.

    ``confidences``: the probability the model gave its prediction (in [0, 1]); ``correct``: whether the
    prediction was right. Bin b holds confidences in (edge_b, edge_{b+1}] (the first bin includes 0).
    """
    n_bins = validate.positive_int(n_bins, "n_bins")
    conf = torch.as_tensor(np.asarray(confidences), dtype=torch.float64).flatten()
    hit = torch.as_tensor(np.asarray(correct)).flatten().to(torch.float64)
    if conf.numel() == 0 or conf.numel() != hit.numel():
        raise ValueError(
            f"confidences and correct must be non-empty and of the same length, got {conf.numel()} and {hit.numel()}"
        )
    if not torch.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidences must be probabilities in [0, 1]; pass softmax outputs, not logits")
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = torch.clamp(torch.bucketize(conf, edges[1:-1], right=False), 0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins).to(torch.float64)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, conf)
    hit_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, hit)
    safe = counts.clamp(min=1)
    mean_conf, accuracy = conf_sum / safe, hit_sum / safe
    ece = float(((counts / counts.sum()) * (accuracy - mean_conf).abs()).sum())
    empty = counts == 0
    mean_conf[empty], accuracy[empty] = float("nan"), float("nan")
    return Calibration(ece, mean_conf.numpy(), accuracy.numpy(), counts.long().numpy(), edges.numpy())


# --------------------------------------------------------------------------- inside a GPT


@torch.no_grad()
def hidden_states(model: nn.Module, idx: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream of a :class:`llmbook.models.GPT`: after the embeddings, then after each block.

    Returns ``n_layer + 1`` tensors (B, T, d). The last one, through ``ln_f`` and ``lm_head``, gives the
    model's logits exactly.
    """
    _check_gpt(model, "hidden_states", ("token_embedding", "position_embedding", "blocks", "ln_f", "lm_head", "config"))
    config = model.config
    idx = validate.token_ids(idx, config.vocab_size, block_size=config.block_size).long()
    with runtime.eval_mode(model):
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = model.token_embedding(idx) + model.position_embedding(positions)
        states = [x]
        for block in model.blocks:
            x, _ = block(x, is_causal=config.causal)
            states.append(x)
    return states


@torch.no_grad()
def logit_lens(model: nn.Module, states: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each residual-stream state decoded by the model's final LayerNorm and output head (nostalgebraist 2020)."""
    return [model.lm_head(model.ln_f(state)) for state in states]


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    steps: int = 200,
    lr: float = 0.05,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> float:
    """Test accuracy of a logistic-regression probe (a single linear layer) trained on frozen features.

    Features are standardised with the training set's mean and standard deviation; the probe is trained
    full-batch with Adam for ``steps`` steps on the cross-entropy.
    """
    steps = validate.positive_int(steps, "steps")
    lr = validate.finite_float(lr, "lr")
    train_x, test_x = train_x.detach().float(), test_x.detach().float()
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"features must be (n, d) with the same d, got {tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    train_y, test_y = train_y.long(), test_y.long()
    if len(train_y) != len(train_x) or len(test_y) != len(test_x):
        raise ValueError("one label per feature row is needed in both the training and the test set")
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    probe = nn.Linear(train_x.shape[1], n_classes)
    with torch.no_grad():
        probe.weight.copy_(0.01 * torch.randn(probe.weight.shape, generator=generator))
        probe.bias.zero_()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(probe(train_x), train_y).backward()
            optimizer.step()
    with torch.no_grad():
        return float((probe(test_x).argmax(-1) == test_y).float().mean())


def _check_gpt(model: nn.Module, caller: str, parts=("token_embedding", "blocks", "lm_head", "config")) -> None:
    """TypeError unless ``model`` has every attribute of ``parts`` that ``caller`` uses (a llmbook GPT)."""
    for part in parts:
        if not hasattr(model, part):
            raise TypeError(f"{caller} needs a llmbook GPT (it has no {part!r}); got {type(model).__name__}")


@torch.no_grad()
def attention_from_last(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The attention weights from the last position of each row, for every layer and head: (B, L, H, T).

    Read from the model's own forward pass (``return_attention=True``) in evaluation mode: row ``[b, l, h]``
    is how head ``h`` of layer ``l`` spread the last position's attention over positions 0..T−1 (it sums
    to 1). These are the weights behind the prediction of the token after ``idx[b]``.
    """
    _check_gpt(model, "attention_from_last")
    idx = validate.token_ids(idx, model.config.vocab_size, block_size=model.config.block_size).long()
    with runtime.eval_mode(model):
        attentions = model(idx, return_attention=True)[2]  # n_layer × (B, H, T, T)
    return torch.stack([weights[:, :, -1, :] for weights in attentions], dim=1)


def gradient_x_input(model: nn.Module, idx: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient × input attribution (B, T) of the prediction at the last position of each row.

    For each input position t with token embedding x_t, the attribution is |Σ_d x_{t,d} ∂s/∂x_{t,d}|,
    where s = log p(target | idx) at the last position: a first-order estimate of how much the score would
    change if that token's embedding were removed. ``target`` (B,) defaults to the model's top prediction.
    The gradient is taken with respect to the output of the model's token embedding, captured by a hook
    during the model's own forward pass (evaluation mode); no parameter's ``.grad`` is touched.
    """
    _check_gpt(model, "gradient_x_input")
    idx = validate.token_ids(idx, model.config.vocab_size, block_size=model.config.block_size).long()
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):  # the embeddings become a leaf we can differentiate against
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = model.token_embedding.register_forward_hook(hook)
    try:
        with runtime.eval_mode(model), torch.enable_grad():
            log_probs = F.log_softmax(model(idx)[0][:, -1].float(), dim=-1)  # (B, V)
            if target is None:
                target = log_probs.argmax(-1)
            target = validate.token_ids(
                torch.as_tensor(target, device=idx.device), model.config.vocab_size, name="target", dims=1
            ).long()
            if target.shape != (idx.shape[0],):
                raise ValueError(
                    f"target must hold one token id per row, shape ({idx.shape[0]},); got {tuple(target.shape)}"
                )
            score = log_probs.gather(1, target[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, captured[0])
    finally:
        handle.remove()
    return (gradient * captured[0]).sum(-1).abs().detach()  # (B, T)


# --------------------------------------------------------------------------- privacy


def exposure(rank: int, n_candidates: int) -> float:
    """Exposure of a canary (Carlini et al. 2019): log2(number of candidates) − log2(its rank among them).

    ``rank`` is 1 for the most likely candidate. Exposure is 0 for the least likely canary and
    log2(n_candidates) when the model ranks the planted canary first.
    """
    rank = validate.positive_int(rank, "rank", hint="1 for the most likely candidate")
    n_candidates = validate.positive_int(n_candidates, "n_candidates")
    if rank > n_candidates:
        raise ValueError(f"rank {rank} is larger than the number of candidates {n_candidates}; ranks run 1..n")
    return math.log2(n_candidates) - math.log2(rank)


def plant_canaries(text: str, canaries: dict[str, int], seed: int = 0) -> str:
    """``text`` with each canary line inserted as many times as ``canaries`` says, at random line starts.

    ``canaries`` maps a line (without its line break) to its number of copies (0 plants none: a secret the
    model never sees, the baseline). The copies go to distinct line boundaries drawn at random, so they are
    spread through the text, not stacked.
    """
    if not isinstance(text, str) or not isinstance(canaries, dict):
        raise TypeError(
            f"plant_canaries needs a str and a dict {{line: copies}}, got {type(text).__name__} and "
            f"{type(canaries).__name__}"
        )
    lines = text.splitlines(keepends=True)
    inserts = []
    for line, copies in canaries.items():
        if not isinstance(line, str) or "\n" in line or not line:
            raise ValueError(f"each canary must be a non-empty line without a line break, got {line!r}")
        inserts += [line + "\n"] * validate.nonnegative_int(copies, f"copies of {line!r}")
    if len(inserts) > len(lines) + 1:
        raise ValueError(
            f"{len(inserts)} copies do not fit at distinct places of a text of {len(lines)} lines; "
            "use a longer text or fewer copies"
        )
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(inserts))
    places = np.sort(rng.choice(len(lines) + 1, size=len(inserts), replace=False))
    out, previous = [], 0
    for place, which in zip(places.tolist(), order.tolist()):
        out += lines[previous:place]
        out.append(inserts[which])
        previous = place
    out += lines[previous:]
    return "".join(out)


@torch.no_grad()
def candidate_log_likelihoods(
    model: nn.Module, prefix: torch.Tensor, candidates: torch.Tensor, batch_size: int = 2048
) -> torch.Tensor:
    """log p(candidate | prefix) under ``model`` for every row of ``candidates`` (N, S): shape (N,).

    One forward pass per batch of candidates reads all S positions at once (the causal mask makes that
    equal to scoring token by token, as :func:`llmbook.generate.sequence_log_likelihood` does with S
    passes). ``prefix`` (P,) is shared by all candidates; P + S − 1 must fit the model's context.
    """
    vocab = model.config.vocab_size
    prefix = validate.token_ids(prefix, vocab, name="prefix", dims=1).long()
    candidates = validate.token_ids(candidates, vocab, name="candidates", dims=2).long()
    batch_size = validate.positive_int(batch_size, "batch_size")
    P, S = len(prefix), candidates.shape[1]
    if P + S - 1 > model.config.block_size:
        raise ValueError(
            f"prefix ({P} tokens) and candidates ({S}) need {P + S - 1} positions, more than the model's "
            f"block_size {model.config.block_size}; use a shorter prefix"
        )
    device = next(model.parameters()).device
    prefix = prefix.to(device)
    scores = []
    with runtime.eval_mode(model):
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start : start + batch_size].to(device)
            idx = torch.cat([prefix.expand(len(chunk), P), chunk], dim=1)  # (n, P + S)
            log_probs = F.log_softmax(model(idx[:, :-1])[0][:, P - 1 :].float(), dim=-1)  # (n, S, V)
            scores.append(log_probs.gather(2, chunk[:, :, None]).squeeze(2).sum(1).cpu())
    return torch.cat(scores)


def canary_rank(log_likelihoods: torch.Tensor, index: int) -> int:
    """The rank (1 = most likely) of candidate ``index`` among all: 1 + how many score strictly higher."""
    scores = torch.as_tensor(log_likelihoods).flatten()
    index = validate.nonnegative_int(index, "index")
    if index >= len(scores):
        raise ValueError(f"index {index} is outside the {len(scores)} candidates")
    if not torch.isfinite(scores).all():
        raise ValueError("the log-likelihoods hold NaN or infinite values; score the candidates again")
    return 1 + int((scores > scores[index]).sum())


# --------------------------------------------------------------------------- near-duplicates

_MINHASH_PRIME = 2**31 - 1


def shingles(text: str, k: int = 5) -> set[str]:
    """The set of ``k``-character substrings of ``text`` (the whole text if it is shorter than ``k``)."""
    if not isinstance(text, str):
        raise TypeError(f"shingles needs a str, got {type(text).__name__}")
    k = validate.positive_int(k, "k")
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1 for two empty sets)."""
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def minhash_signatures(shingle_sets: list[set[str]], num_perm: int = 64, seed: int = 0) -> np.ndarray:
    """MinHash signatures (Broder 1997), one row of ``num_perm`` values per set.

    Each shingle is hashed (crc32) to x, and each of the ``num_perm`` hash functions
    h_i(x) = (a_i·x + b_i) mod p keeps its minimum over the set. Two sets agree in a given column with
    probability equal to their Jaccard similarity, so the share of equal columns estimates it.
    """
    import zlib

    num_perm = validate.positive_int(num_perm, "num_perm")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _MINHASH_PRIME, num_perm, dtype=np.int64)
    b = rng.integers(0, _MINHASH_PRIME, num_perm, dtype=np.int64)
    out = np.empty((len(shingle_sets), num_perm), dtype=np.int64)
    for row, items in enumerate(shingle_sets):
        if not items:
            raise ValueError(f"set {row} is empty; every document needs at least one shingle")
        x = np.fromiter((zlib.crc32(s.encode("utf-8")) % _MINHASH_PRIME for s in items), dtype=np.int64)
        out[row] = ((a[:, None] * x[None, :] + b[:, None]) % _MINHASH_PRIME).min(axis=1)
    return out
