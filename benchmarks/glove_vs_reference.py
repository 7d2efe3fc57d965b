"""Chapter 3 benchmark: our GloVe against gensim's word2vec on the Brown corpus, side by side.

Same corpus (Brown, 1,013,319 words), same vocabulary (min count 5: 14,206
words), same window (10) and dimension, same evaluations (gensim's analogy
questions, WordSim-353, SimLex-999). Both run in this one process, one after
the other, so the machine's load affects them alike: compare the ratios.
BENCHMARKS.md lists Stanford's C GloVe on the same setting (84 s, WS-353 rho
0.132 at 15 iterations, 0.201 at 50; analogy 2.79%).

    .venv/bin/python benchmarks/glove_vs_reference.py            # the full comparison (a few minutes)
    .venv/bin/python benchmarks/glove_vs_reference.py --quick    # GloVe and 5-epoch word2vec only

Measured on 2026-11-23 with ``--threads 1`` on a 2-core machine shared with
six other jobs (load average ~10, so absolute seconds are inflated and vary
from run to run; compare the ratios). GloVe time includes 3.4-3.8 s of counting.
Two runs: ratio A from ``--quick``, ratio B from the full run (times shown).

| system | time (s) | ratio A / B | analogy | WS-353 rho | SimLex rho |
|---|---|---|---|---|---|
| llmbook GloVe, AdaGrad lr 0.4 linear decay, 5 epochs, dim 50 | 67.5 | 0.72 / 1.23 | 3.12% | 0.186 | 0.074 |
| llmbook GloVe, Adam lr 0.02, 5 epochs, dim 50 | 65.1 | 0.95 / 1.19 | 2.20% | 0.217 | 0.069 |
| gensim word2vec skip-gram, 5 epochs, dim 100, 1 worker | 54.9 | 1.00 / 1.00 | 3.52% | 0.271 | 0.146 |
| gensim word2vec skip-gram, 15 epochs, dim 100, 1 worker | 179.4 | - / 3.27 | 3.22% | 0.434 | 0.161 |

The quality figures repeat exactly between runs (fixed seeds). Against
BENCHMARKS.md's Stanford GloVe (15 iterations: 2.79%, rho 0.132; 50
iterations: 2.20%, rho 0.201, 84 s and 232 s on an idle machine) our AdaGrad
run beats the analogy target and falls short of rho 0.20 by 0.014; the Adam
run passes rho 0.20 but not the analogy target. Skip-gram stays ahead on
word similarity (0.271 at 5 epochs, 0.434 at 15). With two torch threads on
the loaded machine GloVe was many times slower (every small tensor operation
waits for both threads to be scheduled), hence ``--threads 1``. On an idle
machine word2vec's 5 epochs take 19.2 s (BENCHMARKS.md); at ratio 0.7-1.2
that puts our GloVe at roughly 14-24 s, against Stanford's 84 s.

Re-measured on the same 2-core machine when idle (2026-11-23, ``--threads 2``,
``--quick``; two runs, the second with ``--epochs 15``):

| system | time (s) | ratio to word2vec-5 | analogy | WS-353 rho | SimLex rho |
|---|---|---|---|---|---|
| llmbook GloVe, AdaGrad, 5 epochs, dim 50 | 17.5 | 1.71 | 3.12% | 0.186 | 0.074 |
| llmbook GloVe, Adam, 5 epochs, dim 50 | 17.3 | 1.69 | 2.20% | 0.217 | 0.069 |
| llmbook GloVe, AdaGrad, 15 epochs, dim 50 | 44.3 | 3.91 | 2.97% | 0.225 | 0.074 |
| llmbook GloVe, Adam, 15 epochs, dim 50 | 56.7 | 5.00 | 1.97% | 0.179 | 0.044 |
| gensim word2vec skip-gram, 5 epochs, dim 100, 2 workers | 10.2 | 1.00 | 3.49% | 0.263 | 0.142 |

AdaGrad for 15 epochs (``--epochs 15``) meets both reference targets at once
(analogy >= 2.8%, WS-353 rho >= 0.20) in 44 s against Stanford GloVe's 84 s;
word2vec's similarity rho stays 0.04 ahead.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from llmbook import glove
from llmbook.data import load_brown_sentences


def evaluate(vectors, vocab) -> dict:
    analogies = glove.analogy_eval(vectors, vocab)
    return {
        "analogy": analogies.accuracy,
        "analogy_covered": analogies.covered,
        "ws353": glove.similarity_eval(vectors, vocab, "wordsim353.tsv").rho,
        "simlex": glove.similarity_eval(vectors, vocab, "simlex999.txt").rho,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads and gensim workers (default 2)")
    parser.add_argument("--dim", type=int, default=50, help="GloVe dimension (50 beat 100 on Brown in our tuning)")
    parser.add_argument("--word2vec-dim", type=int, default=100, help="word2vec dimension (BENCHMARKS.md used 100)")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5, help="GloVe epochs")
    parser.add_argument("--adagrad-lr", type=float, default=0.4, help="AdaGrad (the paper's optimiser), linear decay")
    parser.add_argument("--adam-lr", type=float, default=0.02, help="Adam, constant learning rate")
    parser.add_argument("--batch-size", type=int, default=2**14)
    parser.add_argument("--x-max", type=float, default=10.0)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument(
        "--device", default="cpu", help="where GloVe trains (default cpu, as the tables below; 'cuda' for a GPU)"
    )
    parser.add_argument("--quick", action="store_true", help="skip the 15-epoch word2vec")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sentences = load_brown_sentences()
    vocab = glove.build_vocab(sentences, min_count=5)
    print(
        f"Brown: {sum(map(len, sentences)):,} words, {len(sentences):,} sentences; vocabulary {len(vocab):,} (min count 5)"
    )
    rows = []

    start = time.perf_counter()
    X = glove.cooccurrence(sentences, vocab, window=args.window)  # whole corpus as one stream, like Stanford's tool
    counting = time.perf_counter() - start
    print(f"co-occurrence: {X.nnz:,} nonzero counts in {counting:.1f} s")
    losses = {}
    for optimizer, lr, schedule in [("adagrad", args.adagrad_lr, "linear"), ("adam", args.adam_lr, "constant")]:
        model, result = glove.train_glove(
            X, n_embd=args.dim, epochs=args.epochs, lr=lr, optimizer=optimizer, lr_schedule=schedule,
            batch_size=args.batch_size, x_max=args.x_max, alpha=args.alpha, seed=0, device=args.device,
            progress=False,
        )  # fmt: skip
        history = result.history
        training = history["seconds"][-1]
        losses[optimizer] = history["loss"]
        print(
            f"GloVe {optimizer} on {model.W.device}: {len(history['loss'])} epochs in {training:.1f} s, "
            f"final loss {history['loss'][-1]:.4f}, {history['tokens_per_second'][-1]:,.0f} pairs/s"
        )
        rows.append({"system": f"llmbook GloVe ({optimizer}, lr {lr} {schedule}, {len(history['loss'])} epochs, "
                               f"x_max {args.x_max:g}, dim {args.dim})",
                     "seconds": counting + training, **evaluate(model.vectors(), vocab)})  # fmt: skip

    for epochs in [5] if args.quick else [5, 15]:
        vectors, seconds = glove.train_word2vec(
            sentences, vocab, n_embd=args.word2vec_dim, window=args.window, epochs=epochs, workers=args.threads
        )
        rows.append(
            {
                "system": f"gensim word2vec skip-gram ({epochs} epochs, dim {args.word2vec_dim})",
                "seconds": seconds,
                **evaluate(vectors, vocab),
            }
        )

    reference = rows[2]["seconds"]
    print(
        f"\n{args.threads} threads, window {args.window}; GloVe time includes counting; ratio = time / word2vec 5 epochs\n"
    )
    print("| system | time (s) | ratio | analogy | WS-353 rho | SimLex rho |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['system']} | {row['seconds']:.1f} | {row['seconds'] / reference:.2f} | "
              f"{100 * row['analogy']:.2f}% | {row['ws353']:.3f} | {row['simlex']:.3f} |")  # fmt: skip
    print("| Stanford GloVe (C), 15 iterations, BENCHMARKS.md | 84.3 | - | 2.79% | 0.132 | 0.032 |")
    print("| Stanford GloVe (C), 50 iterations, BENCHMARKS.md | 232.2 | - | 2.20% | 0.201 | 0.039 |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows, "loss": losses}, handle, indent=1)


if __name__ == "__main__":
    main()
