"""llmbook: the library behind *Large Language Models: From Theory to Practice*.

One module per idea, in book order. Below the chapters: ``runtime`` (device,
budget, mixed precision, peak FLOP/s), ``validate`` (argument checks), ``data``
(downloads, loaders, batchers) and ``checkpoint`` (saving and resuming runs);
they import no chapter module. The chapters: ``ngram`` (1), ``tokenizers`` (2),
``glove`` (3), ``attention`` (4), ``models`` (5), ``optim``, ``train``,
``generate`` and ``rnn`` (6), ``viz`` and ``figures`` (4-9), ``pretrained``
(models shared across chapters) and ``exercises`` (the self-checking exercises
of every chapter). ``notebook`` holds the chapters' helpers (``show_source``,
``glue``). The instructor tooling (student edition, grader) is the separate
subpackage ``llmbook.instructor`` (``pip install .[instructor]``).
"""

__version__ = "0.1.0"
