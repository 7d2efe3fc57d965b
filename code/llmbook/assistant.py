"""Instruction data, supervised fine-tuning and DPO on the book's own models (Chapter 9: From a base model
to an assistant).

Everything here can be checked by a program, so every result of the chapter is
an exact-match score:

* :data:`TASKS`: small tasks whose answers a program computes (reverse a
  word, capitalise it, its first letter, its length, the sum of two digits,
  a question about a passage), each with phrasings for training and one
  phrasing held out; ``"last"`` (the last letter) is a task held out of
  training altogether;
* :func:`chat_text`: the chat template, ``<|user|>instruction[\\ninput]<|assistant|>response<|end|>``,
  over :func:`chat_tokenizer` (the 256 bytes of Chapter 2's byte-level
  tokenizer plus the three special tokens);
* :class:`SFTBatcher`: batches for :func:`llmbook.train.train` whose targets
  are -100 on the prompt (the loss counts the response only), or on nothing
  with ``prompt_loss=True``;
* :func:`generate_responses` and :func:`evaluate`: greedy answers and exact
  match per task; :func:`answer_of` reads the answer out of a chatty reply;
* :func:`preference_pairs`, :func:`response_logprobs`, :func:`dpo_loss` and
  :func:`train_dpo`: Direct Preference Optimization (Rafailov et al., 2023)
  against a frozen reference model.
"""

from __future__ import annotations

import copy
import random
import re
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .tokenizers import BPETokenizer

__all__ = [
    "USER",
    "ASSISTANT",
    "END",
    "TASKS",
    "FORMS",
    "HELD_OUT_TASK",
    "Example",
    "chat_tokenizer",
    "chat_text",
    "word_lists",
    "make_examples",
    "chatty",
    "answer_of",
    "pretraining_text",
    "SFTBatcher",
    "generate_responses",
    "evaluate",
    "preference_pairs",
    "response_logprobs",
    "dpo_loss",
    "train_dpo",
]

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
IGNORE_INDEX = -100


def chat_tokenizer() -> BPETokenizer:
    """Chapter 2's byte-level tokenizer with no merges: ids 0-255 are bytes, 256-258 the special tokens
    ``<|user|>``, ``<|assistant|>`` and ``<|end|>`` (each always one id, never produced by text)."""
    return BPETokenizer(merges=(), special_tokens=(USER, ASSISTANT, END))


def chat_text(instruction: str, input: str = "", response: str | None = None) -> str:
    """The chat template: ``<|user|>instruction[\\ninput]<|assistant|>`` then, when given,
    ``response<|end|>``.

    >>> chat_text("Reverse the word cat.", response="tac")
    '<|user|>Reverse the word cat.<|assistant|>tac<|end|>'
    """
    prompt = USER + instruction + ("\n" + input if input else "") + ASSISTANT
    return prompt if response is None else prompt + response + END


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Example:
    """One instruction: ``task``, the text of the ``prompt`` (template applied), the ``response`` to train
    on, the ``answer`` a program checks against, and whether its phrasing was ``held_out``."""

    task: str
    prompt: str
    response: str
    answer: str
    held_out: bool = False


# Each task: phrasings (the last one is held out of training) and answer(word or numbers).
TASKS: dict[str, dict] = {
    "reverse": dict(
        phrasings=["Reverse the word {w}.", "Write {w} backwards.", "Spell {w} from its last letter to its first."],
        answer=lambda w: w[::-1],
    ),
    "upper": dict(
        phrasings=["Write {w} in capital letters.", "Uppercase this word: {w}", "Make {w} upper case."],
        answer=lambda w: w.upper(),
    ),
    "first": dict(
        phrasings=["What is the first letter of {w}?", "Give the first letter of {w}.", "Which letter starts {w}?"],
        answer=lambda w: w[0],
    ),
    "length": dict(
        phrasings=["How many letters are in {w}?", "Count the letters of {w}.", "What is the length of {w}?"],
        answer=lambda w: str(len(w)),
    ),
    "add": dict(
        phrasings=["What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}."],
        answer=lambda a, b: str(a + b),
    ),
    "read": dict(  # a question about a passage given as the input; Chapter 9's retrieval supplies it
        phrasings=["Answer from the text: {q}", "Read the text, then answer: {q}", "Use the text to answer: {q}"],
        answer=None,
    ),
    "last": dict(phrasings=["What is the last letter of {w}?"], answer=lambda w: w[-1]),  # never trained
}
# The form of a reply that follows each instruction, right or wrong: a program can tell an attempt at the
# task (one letter, a number, an upper-case word) from text that merely continues the prompt.
FORMS: dict[str, re.Pattern] = {
    "reverse": re.compile(r"[a-z]{2,}"),
    "upper": re.compile(r"[A-Z]{2,}"),
    "first": re.compile(r"[a-z]"),
    "length": re.compile(r"[0-9]{1,2}"),
    "add": re.compile(r"[0-9]{1,2}"),
    "read": re.compile(r"[A-Z][a-z]+|[0-9]{1,2}"),
    "last": re.compile(r"[a-z]"),
}
HELD_OUT_TASK = "last"
TRAINED_TASKS = tuple(task for task in TASKS if task != HELD_OUT_TASK)

CHATTY = "Sure! It is {answer}. Glad to help!"


def chatty(answer: str) -> str:
    """The correct answer wrapped in pleasantries (a reply that is correct but not concise)."""
    return CHATTY.format(answer=answer)


_CHATTY_PATTERN = re.compile(r"^Sure! It is (.*)\. Glad to help!$", re.DOTALL)


def answer_of(response: str) -> str:
    """The answer in a response: the response itself, or what a chatty reply wraps.

    >>> answer_of(chatty("tac")), answer_of("tac")
    ('tac', 'tac')
    """
    match = _CHATTY_PATTERN.match(response.strip())
    return match.group(1) if match else response.strip()


def word_lists(text: str, seed: int = 0, test_fraction: float = 0.25) -> tuple[list[str], list[str]]:
    """Lower-case words of 3 to 6 letters from ``text``, shuffled and split into (train, test) words:
    the test questions are asked about words the fine-tuning never saw."""
    words = sorted({w for w in re.findall(r"[a-z]+", text) if 3 <= len(w) <= 6})
    random.Random(seed).shuffle(words)
    cut = int(len(words) * (1 - test_fraction))
    return words[:cut], words[cut:]


_NAMES_A = ["Al", "Be", "Co", "Da", "El", "Fi", "Go", "Ha", "Il", "Jo", "Ka", "Lu", "Mo", "Ni", "Or", "Pe"]
_NAMES_B = ["ran", "vin", "lot", "mer", "dan", "sek", "tor", "bin", "wen", "ruk", "lia", "mos", "tal", "fen"]
_TOWNS = ["Ash", "Bray", "Cole", "Dene", "Eske", "Fold", "Glen", "Holt", "Innis", "Kirk", "Lyme", "Moss", "Ness"]


def person_names(seed: int) -> list[str]:
    """All made-up names (two syllables), shuffled by ``seed``."""
    names = [a + b for a in _NAMES_A for b in _NAMES_B]
    random.Random(seed).shuffle(names)
    return names


def fact(name: str, town: str, goats: int) -> str:
    """One short document of the retrieval collection."""
    return f"{name} lives in {town}. {name} keeps {goats} goats."


def read_question(name: str, kind: str) -> tuple[str, str]:
    """A question about a person and the field of the fact that answers it."""
    return (f"Where does {name} live?", "town") if kind == "town" else (f"How many goats has {name}?", "goats")


def make_examples(
    task: str,
    n: int,
    words: list[str],
    rng: random.Random,
    held_out_phrasing: bool = False,
    chatty_fraction: float = 0.0,
    names: list[str] | None = None,
) -> list[Example]:
    """``n`` examples of ``task`` about ``words`` (or digits, or made-up people from ``names``), with the
    training phrasings or the held-out one. A fraction ``chatty_fraction`` of the responses wrap the
    answer in pleasantries (:func:`chatty`), as human-written data often does."""
    validate.one_of(task, "task", tuple(TASKS))
    validate.positive_int(n, "n")
    spec = TASKS[task]
    phrasings = spec["phrasings"]
    choices = phrasings[-1:] if held_out_phrasing or task == HELD_OUT_TASK else phrasings[:-1]
    examples = []
    for _ in range(n):
        phrasing, source = rng.choice(choices), ""
        if task == "add":
            a, b = rng.randrange(10), rng.randrange(10)
            instruction, answer = phrasing.format(a=a, b=b), spec["answer"](a, b)
        elif task == "read":
            name, town, goats = rng.choice(names or person_names(1)), rng.choice(_TOWNS), rng.randrange(2, 10)
            question, kind = read_question(name, rng.choice(("town", "goats")))
            instruction, source = phrasing.format(q=question), fact(name, town, goats)
            answer = town if kind == "town" else str(goats)
        else:
            word = rng.choice(words)
            instruction, answer = phrasing.format(w=word), spec["answer"](word)
        response = chatty(answer) if rng.random() < chatty_fraction else answer
        examples.append(Example(task, chat_text(instruction, source), response, answer, held_out_phrasing))
    return examples


def pretraining_text(shakespeare: str, seed: int = 0, lines: int = 4000) -> str:
    """The base model's corpus: Tiny Shakespeare plus ``lines`` generated sentences with digits, sums and
    made-up people and towns, so every character the tasks use appears in pre-training. Documents are
    separated by ``<|end|>``, the end-of-text token. No instruction and no chat template appears in it."""
    rng = random.Random(seed)
    words = re.findall(r"[a-z]+", shakespeare[:200_000])
    sentences = []
    for _ in range(lines):
        kind = rng.randrange(4)
        if kind == 0:
            sentences.append(f"{rng.randrange(10)} and {rng.randrange(10)} make {rng.randrange(19)}.")
        elif kind == 1:
            name = rng.choice(person_names(seed + 7))
            sentences.append(fact(name, rng.choice(_TOWNS), rng.randrange(2, 10)))
        elif kind == 2:
            sentences.append(f"The {rng.choice(words)} had {rng.randrange(2, 100)} {rng.choice(words)}s.")
        else:
            word = rng.choice(words)
            sentences.append(f"{word.upper()} and {word} and {word.capitalize()}.")
    return shakespeare + END + END.join(" ".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8))


# --------------------------------------------------------------------------- supervised fine-tuning


class SFTBatcher:
    """Batches of chat examples for :func:`llmbook.train.train`: ``get_batch(split, batch_size, generator)``.

    Each row is ``prompt + response + <|end|>``, right-padded with ``<|end|>``.
    Targets are the inputs shifted left by one, with -100 (ignored by the loss)
    on the padding and, unless ``prompt_loss``, on every position whose target
    is still part of the prompt: the model learns to answer, not to ask.
    """

    def __init__(self, train: list[Example], val: list[Example], tokenizer, block_size: int, prompt_loss=False):
        self.block_size = validate.positive_int(block_size, "block_size")
        self.tokenizer, self.prompt_loss = tokenizer, bool(prompt_loss)
        self.end = tokenizer.special_tokens[END]
        self.rows = {"train": [self._encode(e) for e in train], "val": [self._encode(e) for e in val]}
        for split, rows in self.rows.items():
            if not rows:
                raise ValueError(f"the {split} split has no examples; give at least one")

    def _encode(self, example: Example) -> tuple[list[int], int]:
        prompt = self.tokenizer.encode(example.prompt)
        ids = prompt + self.tokenizer.encode(example.response) + [self.end]
        if len(ids) > self.block_size + 1:
            raise ValueError(
                f"an example has {len(ids)} tokens but block_size={self.block_size} allows {self.block_size + 1}: "
                f"{example.prompt!r}; use a larger block_size"
            )
        return ids, len(prompt)

    def encode_rows(self, rows: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for ``rows`` of (ids, prompt length), padded to the longest row."""
        width = max(len(ids) for ids, _ in rows) - 1
        x = torch.full((len(rows), width), self.end, dtype=torch.long)
        y = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, prompt_length) in enumerate(rows):
            ids = torch.tensor(ids)
            x[i, : len(ids) - 1], y[i, : len(ids) - 1] = ids[:-1], ids[1:]  # predict token t+1 from tokens <= t
            if not self.prompt_loss:
                y[i, : prompt_length - 1] = IGNORE_INDEX  # targets inside the prompt do not count
        return x, y

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        rows = self.rows[validate.one_of(split, "split", ("train", "val"))]
        picks = torch.randint(len(rows), (validate.positive_int(batch_size, "batch_size"),), generator=generator)
        return self.encode_rows([rows[int(i)] for i in picks])


@torch.no_grad()
def generate_responses(model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int = 24) -> list[str]:
    """Greedy replies to ``prompts`` (template applied), each up to ``<|end|>`` or ``max_new_tokens``.

    Prompts of the same length in tokens run as one batch, so no padding is needed."""
    validate.positive_int(max_new_tokens, "max_new_tokens")
    end = tokenizer.special_tokens[END]
    device = next(model.parameters()).device
    block_size = model.config.block_size
    encoded = [tokenizer.encode(p) for p in prompts]
    replies: list[str] = [""] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    was_training = model.training
    model.eval()
    try:
        for length, rows in by_length.items():
            idx = torch.tensor([encoded[i] for i in rows], device=device)  # (B, T)
            done = torch.zeros(len(rows), dtype=torch.bool, device=device)
            steps = min(max_new_tokens, block_size - length)
            for _ in range(steps):
                logits = model(idx[:, -block_size:])[0][:, -1]  # (B, V)
                next_token = logits.argmax(dim=-1)
                next_token[done] = end
                idx = torch.cat([idx, next_token[:, None]], dim=1)
                done |= next_token == end
                if bool(done.all()):
                    break
            for row, ids in zip(rows, idx[:, length:].tolist()):
                ids = ids[: ids.index(end)] if end in ids else ids
                replies[row] = tokenizer.decode([i for i in ids if i < 256])
    finally:
        model.train(was_training)
    return replies


def evaluate(model: nn.Module, tokenizer, examples: list[Example], max_new_tokens: int = 24) -> dict:
    """Exact match per task (answer read with :func:`answer_of`), the share of concise correct replies
    (the reply is exactly the answer) and the share of well-formed replies (the answer has the task's
    form in :data:`FORMS`, right or wrong), over ``examples``: {"exact": {task: rate}, "concise": {...},
    "form": {...}, "replies": [...]} plus the overall rates "exact_all", "concise_all" and "form_all"."""
    replies = generate_responses(model, tokenizer, [e.prompt for e in examples], max_new_tokens)
    hits: dict[str, dict[str, list[bool]]] = {"exact": {}, "concise": {}, "form": {}}
    for example, reply in zip(examples, replies):
        answer = answer_of(reply)
        hits["exact"].setdefault(example.task, []).append(answer == example.answer)
        hits["concise"].setdefault(example.task, []).append(reply == example.answer)
        hits["form"].setdefault(example.task, []).append(bool(FORMS[example.task].fullmatch(answer)))
    rate = lambda flags: sum(flags) / len(flags)  # noqa: E731
    result: dict = {"replies": replies}
    for kind, by_task in hits.items():
        result[kind] = {task: rate(flags) for task, flags in by_task.items()}
        result[f"{kind}_all"] = rate([flag for flags in by_task.values() for flag in flags])
    return result


# --------------------------------------------------------------------------- preference tuning (DPO)


@dataclass(frozen=True)
class Pair:
    """A preference pair: the same ``prompt``, a ``chosen`` and a ``rejected`` response."""

    prompt: str
    chosen: str
    rejected: str
    task: str
    kind: str  # "wrong": the rejected answer is wrong; "chatty": it is right but wrapped in pleasantries


def _wrong_answer(example: Example, rng: random.Random) -> str:
    answer = example.answer
    if answer.isdigit():
        return str(int(answer) + rng.choice((-1, 1, 2)))
    if len(answer) > 1:
        return answer[1:] + answer[0]  # a rotated word: close, and wrong
    return chr((ord(answer.lower()) - 97 + rng.randrange(1, 26)) % 26 + 97)


def preference_pairs(examples: list[Example], seed: int = 0, chatty_share: float = 0.5) -> list[Pair]:
    """For each example, chosen = the concise correct answer; rejected = the chatty correct answer (a share
    ``chatty_share`` of pairs) or a concise wrong one."""
    rng = random.Random(seed)
    pairs = []
    for example in examples:
        if rng.random() < chatty_share:
            pairs.append(Pair(example.prompt, example.answer, chatty(example.answer), example.task, "chatty"))
        else:
            pairs.append(Pair(example.prompt, example.answer, _wrong_answer(example, rng), example.task, "wrong"))
    return pairs


def _pair_batch(pairs: list[Pair], tokenizer, which: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    batcher = SFTBatcher.__new__(SFTBatcher)  # only the encoding: the response-only targets
    batcher.tokenizer, batcher.prompt_loss, batcher.end = tokenizer, False, tokenizer.special_tokens[END]
    batcher.block_size = 10**9
    rows = [batcher._encode(Example(p.task, p.prompt, getattr(p, which), "")) for p in pairs]
    x, y = batcher.encode_rows(rows)
    return x.to(device), y.to(device)


def response_logprobs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log π(response | prompt): the sum of the log-probabilities of the targets that are not -100,
    one number per row (B,)."""
    logits = model(x)[0].float()  # (B, T, V)
    valid = y != IGNORE_INDEX
    picked = torch.log_softmax(logits, dim=-1).gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    return (picked * valid).sum(dim=-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss -log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))]), averaged over pairs.

    Returns ``(loss, chosen_rewards, rejected_rewards)``: the implicit rewards
    β·(log π - log π_ref) of each response (B,). Their difference is the reward
    margin; the share of pairs where it is positive is the preference accuracy.
    """
    beta = validate.finite_float(beta, "beta", low=0.0, low_inclusive=False, hint="e.g. 0.1")
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


@torch.no_grad()
def preference_metrics(policy, reference, pairs: list[Pair], tokenizer, beta: float) -> dict:
    """Mean reward margin, preference accuracy (share of pairs with a positive margin) and the mean implicit
    rewards of the chosen and of the rejected replies on ``pairs``."""
    device = next(policy.parameters()).device
    xc, yc = _pair_batch(pairs, tokenizer, "chosen", device)
    xr, yr = _pair_batch(pairs, tokenizer, "rejected", device)
    was = policy.training
    policy.eval()
    try:
        loss, chosen, rejected = dpo_loss(
            response_logprobs(policy, xc, yc), response_logprobs(policy, xr, yr),
            response_logprobs(reference, xc, yc), response_logprobs(reference, xr, yr), beta,
        )  # fmt: skip
    finally:
        policy.train(was)
    margin = chosen - rejected
    return {"loss": float(loss), "margin": float(margin.mean()), "accuracy": float((margin > 0).float().mean()),
            "chosen_reward": float(chosen.mean()), "rejected_reward": float(rejected.mean())}  # fmt: skip


def train_dpo(
    policy: nn.Module,
    pairs: list[Pair],
    val_pairs: list[Pair],
    tokenizer,
    beta: float = 0.1,
    steps: int = 100,
    batch_size: int = 16,
    lr: float = 1e-4,
    eval_interval: int = 20,
    max_seconds: float | None = None,
    seed: int = 0,
) -> tuple[nn.Module, dict]:
    """Train ``policy`` with the DPO loss against a frozen copy of itself (the reference), on ``pairs``.

    Returns ``(reference, history)``; ``history`` holds, at each evaluation,
    ``step``, ``loss``, ``margin``, ``accuracy``, ``chosen_reward`` and
    ``rejected_reward`` on ``val_pairs``, and the training ``train_loss`` per step."""
    validate.positive_int(steps, "steps")
    validate.positive_int(batch_size, "batch_size")
    reference = copy.deepcopy(policy).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    device = next(policy.parameters()).device
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    keys = ("loss", "margin", "accuracy", "chosen_reward", "rejected_reward")
    history: dict[str, list] = {"step": [], "train_loss": [], **{key: [] for key in keys}}
    rng = random.Random(seed)
    started = time.perf_counter()

    def record(step):
        metrics = preference_metrics(policy, reference, val_pairs, tokenizer, beta)
        history["step"].append(step)
        for key in keys:
            history[key].append(metrics[key])

    record(0)
    policy.train()
    for step in range(1, steps + 1):
        batch = rng.sample(pairs, min(batch_size, len(pairs)))
        xc, yc = _pair_batch(batch, tokenizer, "chosen", device)
        xr, yr = _pair_batch(batch, tokenizer, "rejected", device)
        with torch.no_grad():
            ref_c, ref_r = response_logprobs(reference, xc, yc), response_logprobs(reference, xr, yr)
        loss, _, _ = dpo_loss(response_logprobs(policy, xc, yc), response_logprobs(policy, xr, yr), ref_c, ref_r, beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        history["train_loss"].append(loss.item())
        out_of_time = max_seconds is not None and time.perf_counter() - started > max_seconds
        if step % eval_interval == 0 or step == steps or out_of_time:
            record(step)
        if out_of_time:
            break
    policy.eval()
    return reference, history
