"""Checks for the exercises of Chapter 5: Building the Transformer (GPT and BERT from scratch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import exercise, expect

# ------------------------------------------------------------------ parameter count of a GPT

_PARAM_CASES = [(65, 256, 6, 384), (50257, 1024, 12, 768), (100, 8, 1, 16), (1000, 64, 3, 48)]


def _count_params(vocab_size, block_size, n_layer, n_embd):
    from llmbook.models import GPT, GPTConfig

    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd)
    with torch.device("meta"):  # shapes only: fast even for GPT-2 small
        return GPT(config).num_params()


@exercise(
    "ch05.gpt_param_count",
    name="gpt_param_count",
    title="Parameter count of a GPT",
    wrong=[
        lambda V, T, L, d: 12 * L * d * d + (V + T) * d,  # forgets biases and LayerNorms
        lambda V, T, L, d: 12 * L * d * d + 13 * L * d + (V + T) * d + 2 * d + V * d,  # untied head
        lambda V, T, L, d: 12 * L * d * d + 13 * L * d + V * d + 2 * d,  # forgets the position embedding
        lambda V, T, L, d: 12 * L * d * d + 9 * L * d + (V + T) * d,  # biases but no LayerNorms
    ],
)
def check_gpt_param_count(gpt_param_count):
    for V, T, L, d in _PARAM_CASES:
        expected = _count_params(V, T, L, d)
        got = gpt_param_count(V, T, L, d)
        expect(
            got == expected,
            f"gpt_param_count({V}, {T}, {L}, {d}) returned {got}, but GPT has {expected} parameters "
            f"(off by {got - expected:+d}). Count per block: attention (Q, K, V, output: weights and biases), "
            "MLP (two linear maps with biases), two LayerNorms (scale and shift); then the token and position "
            "embeddings and the final LayerNorm. The head is tied: it adds nothing.",
        )


# ------------------------------------------------------------------ predict the shapes

_SHAPES = {"logits": (8, 20, 65), "num_attentions": 4, "attention": (8, 4, 20, 20)}


@exercise(
    "ch05.output_shapes",
    name="output_shapes",
    title="Shapes of GPT's outputs",
    wrong=[
        {"logits": (8, 32, 65), "num_attentions": 4, "attention": (8, 4, 32, 32)},  # block_size, not T
        {"logits": (8, 20, 64), "num_attentions": 4, "attention": (8, 4, 20, 20)},  # width, not vocabulary
        {"logits": (8, 20, 65), "num_attentions": 4, "attention": (8, 4, 20, 16)},  # head_dim for keys
        {"logits": (8, 20, 65), "num_attentions": 1, "attention": (8, 4, 20, 20)},
        {"logits": (8, 65), "num_attentions": 4, "attention": (8, 4, 20, 20)},  # last position only
    ],
)
def check_output_shapes(output_shapes):
    expect(isinstance(output_shapes, dict), f"output_shapes should be a dict, got {type(output_shapes).__name__}")
    for key in _SHAPES:
        expect(key in output_shapes, f"output_shapes has no key {key!r}; it needs {sorted(_SHAPES)}")
    logits = tuple(output_shapes["logits"])
    expect(
        logits == _SHAPES["logits"],
        f"logits shape {logits} is not right: one row of vocabulary scores for every position of every sequence "
        "(batch, positions given, vocabulary size); the context length block_size only bounds the positions",
    )
    expect(
        output_shapes["num_attentions"] == _SHAPES["num_attentions"],
        f"num_attentions = {output_shapes['num_attentions']}: return_attention gives one tensor per layer",
    )
    attention = tuple(output_shapes["attention"])
    expect(
        attention == _SHAPES["attention"],
        f"attention shape {attention} is not right: (batch, heads, queries, keys), and every one of the 20 "
        "positions is both a query and a key",
    )


# ------------------------------------------------------------------ the MLP of a block


def _reference_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias):
    return F.linear(F.gelu(F.linear(x, fc_weight, fc_bias)), proj_weight, proj_bias)


@exercise(
    "ch05.mlp",
    name="mlp",
    title="The feed-forward block",
    wrong=[
        lambda x, w1, b1, w2, b2: F.linear(F.relu(F.linear(x, w1, b1)), w2, b2),  # ReLU, not GELU
        lambda x, w1, b1, w2, b2: F.linear(F.gelu(F.linear(x, w1)), w2),  # no biases
        lambda x, w1, b1, w2, b2: F.gelu(F.linear(F.linear(x, w1, b1), w2, b2)),  # GELU in the wrong place
        lambda x, w1, b1, w2, b2: x + F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2),  # adds the residual itself
    ],
)
def check_mlp(mlp):
    from llmbook.models import MLP

    generator = torch.Generator().manual_seed(5)
    for d, shape in ((8, (2, 3)), (16, (1, 5))):
        module = MLP(d).eval()
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        x = torch.randn(*shape, d, generator=generator)
        expected = module(x)
        got = mlp(
            x,
            module.fc.weight.detach(),
            module.fc.bias.detach(),
            module.proj.weight.detach(),
            module.proj.bias.detach(),
        )
        expect(isinstance(got, torch.Tensor), f"mlp should return a tensor, got {type(got).__name__}")
        expect(
            got.shape == expected.shape,
            f"mlp returned shape {tuple(got.shape)} for x of shape {tuple(x.shape)}; expected {tuple(expected.shape)}",
        )
        error = (got - expected).abs().max().item()
        expect(
            error < 1e-5,
            f"mlp differs from the block's MLP by up to {error:.3g} for d = {d}: expand with fc (weight and bias), "
            "apply GELU, project back with proj (weight and bias); the residual add is the block's job, not the MLP's",
        )


# ------------------------------------------------------------------ an experiment: does a model see the future?


def _always_false(model, T=8):
    return False


def _compares_the_changed_position_too(model, T=8):
    idx = torch.randint(0, model.config.vocab_size, (1, T))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % model.config.vocab_size
    with torch.no_grad():
        return not torch.allclose(model(idx)[0], model(changed)[0], atol=1e-6)


@exercise(
    "ch05.leaks_future",
    name="leaks_future",
    title="Detecting a model that sees the future",
    wrong=[_always_false, _compares_the_changed_position_too, lambda model, T=8: True],
)
def check_leaks_future(leaks_future):
    from llmbook.models import BERT, GPT, BERTConfig, GPTConfig

    torch.manual_seed(0)
    sizes = dict(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=16)
    cases = [
        ("a GPT with its causal mask", GPT(GPTConfig(**sizes)).eval(), False),
        ("a GPT built with causal=False", GPT(GPTConfig(**sizes, causal=False)).eval(), True),
        ("a BERT (bidirectional encoder)", BERT(BERTConfig(**sizes, dropout=0.0)).eval(), True),
    ]
    for description, model, expected in cases:
        got = leaks_future(model)
        expect(
            isinstance(got, (bool, torch.Tensor)) and bool(got) == expected,
            f"leaks_future returned {got!r} for {description}; expected {expected}. Change only the LAST token "
            "and compare the logits at the EARLIER positions: the last position itself always changes.",
        )


# ------------------------------------------------------------------ training FLOPs per token


@exercise(
    "ch05.training_flops",
    name="training_flops",
    title="Training FLOPs per token",
    wrong=[
        lambda L, d, V, T: 6 * (12 * L * d * d + V * d),  # leaves out attention scores
        lambda L, d, V, T: 2 * (12 * L * d * d + V * d) + 4 * L * T * d,  # forward pass only
        lambda L, d, V, T: 6 * 12 * L * d * d + 12 * L * T * d,  # forgets the LM head
    ],
)
def check_training_flops(training_flops):
    from llmbook.models import GPT, GPTConfig

    for L, d, V, T in ((12, 768, 50257, 1024), (4, 128, 65, 64), (2, 32, 1000, 512)):
        with torch.device("meta"):
            model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=1, n_embd=d))
        expected = model.flops_per_token(training=True)
        got = training_flops(L, d, V, T)
        expect(
            got == expected,
            f"training_flops({L}, {d}, {V}, {T}) returned {got:,}; GPT.flops_per_token() gives {expected:,} "
            f"(yours is {got / expected:.3f} times that). Count 2 FLOPs per weight in every matrix a token meets "
            "(12·L·d² in the blocks and V·d in the head), 2·T·d for q·kᵀ and 2·T·d for weights·v per layer, "
            "then 3x for forward + backward.",
        )


# ------------------------------------------------------------------ find the previous-token head


def _planted_heads(n_layer, n_head, T, layer, head, seed):
    """Softmax attention (causal) of random heads, with one previous-token head planted at (layer, head),
    a first-token head and a self head elsewhere, so the wrong kinds of head each have a clear winner too."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    layers = []
    for _ in range(n_layer):
        scores = torch.randn(1, n_head, T, T, generator=generator)
        layers.append(torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1))
    q = torch.arange(1, T)
    previous = torch.zeros(T, T)
    previous[0, 0] = 1.0
    previous[q, q - 1] = 0.9
    previous[q, q] = 0.1
    layers[layer][0, head] = previous
    decoy_layer, decoy_head = (layer + 1) % n_layer, (head + 1) % n_head
    first = torch.zeros(T, T)
    first[:, 0] = 1.0
    layers[decoy_layer][0, decoy_head] = first
    layers[(layer + n_layer - 1) % n_layer][0, (head + 2) % n_head] = torch.eye(T)
    return layers


_HEAD_CASES = [(2, 4, 12, 1, 2, 0), (3, 3, 9, 0, 1, 1), (4, 2, 16, 3, 0, 2), (1, 4, 6, 0, 3, 3)]


def _by_diagonal(offset):
    def find(attentions):
        best, where = -1.0, None
        for layer, weights in enumerate(attentions):
            weights = weights[0] if weights.dim() == 4 else weights
            T = weights.shape[-1]
            for head in range(weights.shape[0]):
                values = torch.diagonal(weights[head], offset=offset)
                score = float(values.mean()) if len(values) else 0.0
                if T > 1 and score > best:
                    best, where = score, (layer, head)
        return where

    return find


def _first_token_head(attentions):
    scores = [
        (float(w[0, h, 1:, 0].mean()), (layer, h)) for layer, w in enumerate(attentions) for h in range(w.shape[1])
    ]
    return max(scores)[1]


def _head_then_layer(attentions):
    layer, head = _by_diagonal(-1)(attentions)
    return head, layer


@exercise(
    "ch05.previous_token_head",
    name="previous_token_head",
    title="Find the previous-token head",
    wrong=[_by_diagonal(0), _by_diagonal(1), _first_token_head, _head_then_layer],
)
def check_previous_token_head(previous_token_head):
    from llmbook.models import GPT, GPTConfig
    from llmbook.viz import head_scores

    for n_layer, n_head, T, layer, head, seed in _HEAD_CASES:
        attentions = _planted_heads(n_layer, n_head, T, layer, head, seed)
        got = previous_token_head([a.clone() for a in attentions])
        got = tuple(int(v) for v in got) if isinstance(got, (tuple, list)) else got
        expect(
            got == (layer, head),
            f"for {n_layer} layers of {n_head} heads over {T} tokens your function returned {got!r}, but the head "
            f"that puts the most weight on the previous token is (layer, head) = {(layer, head)}: it gives 0.9 of "
            "every row q >= 1 to key q - 1 (the diagonal just below the main one). Average weights[q, q - 1] over "
            "q = 1..T-1 for each head and return the (layer, head) with the largest mean.",
        )
    torch.manual_seed(5)
    model = GPT(GPTConfig(vocab_size=13, block_size=10, n_layer=2, n_head=3, n_embd=24)).eval()
    with torch.no_grad():
        _, _, attentions = model(torch.randint(0, 13, (1, 10)), return_attention=True)
    expected = head_scores(attentions).top("previous")
    got = previous_token_head(list(attentions))
    got = tuple(int(v) for v in got) if isinstance(got, (tuple, list)) else got
    expect(
        got == expected,
        f"on an untrained GPT's attention (2 layers, 3 heads) you returned {got!r}; llmbook.viz.head_scores says "
        f"the head with the largest mean weight on the previous token is {expected}.",
    )
