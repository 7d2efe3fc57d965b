"""The instructor's commands moved to ``python -m llmbook.instructor`` (this pointer imports nothing of it)."""

import sys

if __name__ == "__main__":
    command = " ".join(sys.argv[1:]) or "--help"
    print(
        "The instructor's commands (student-edition, grade, list) moved to llmbook.instructor:\n"
        f"    python -m llmbook.instructor {command}\n"
        'It needs the instructor extra: pip install "llmbook[instructor]" (Appendix C).',
        file=sys.stderr,
    )
    sys.exit(2)
