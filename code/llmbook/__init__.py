"""llmbook: the library behind *Large Language Models: From Theory to Practice*.

One module per idea, in book order: ``runtime`` and ``data`` (every chapter),
``ngram`` (1), ``tokenizers`` (2), ``glove`` (3), ``attention`` (4),
``models`` (5), ``train``, ``generate`` and ``rnn`` (6), ``viz`` (4-9) and
``exercises`` (the self-checking exercises of every chapter).
"""

__version__ = "0.1.0"
