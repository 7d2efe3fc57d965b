"""Sphinx extension: the bibliography page labels its entries by author and year, as the text cites them.

The chapters cite with ``{cite}`key``` in sphinxcontrib-bibtex's ``author_year`` reference style
("Vaswani et al. 2017"); pybtex's ``plain`` style would still number the list itself [1], [2], ....
This registers a pybtex formatting style ``author_year_plain``: ``plain``'s entries and order
(sorted by author, year, title) with labels such as "Vaswani et al., 2017", "Kneser and Ney, 1995" or
"Shannon, 1948". Two works with the same label get "2013a", "2013b", in the order of the list.
_config.yml selects it with ``bibtex_default_style: author_year_plain``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

STYLE_NAME = "author_year_plain"


def _surname(person) -> str:
    """A person's surname as plain text ("von Neumann", "Schölkopf"; LaTeX accents and braces resolved)."""
    parts = person.prelast_names + person.last_names
    return str(Text.from_latex(" ".join(parts))) if parts else str(Text.from_latex(" ".join(person.first_names)))


def author_year_label(entry) -> str:
    """ "Shannon, 1948", "Kneser and Ney, 1995", "Vaswani et al., 2017" (authors, else editors, else the key)."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(person) for person in people]
    if not names:
        who = entry.key
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    year = entry.fields.get("year", "n.d.")
    return f"{who}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(entry) for entry in entries]
        totals = Counter(labels)
        seen: Counter[str] = Counter()
        for label in labels:
            if totals[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearPlainStyle(PlainStyle):
    default_label_style = STYLE_NAME


def setup(app: Any) -> dict[str, Any]:
    register_plugin("pybtex.style.labels", STYLE_NAME, AuthorYearLabelStyle, force=True)
    register_plugin("pybtex.style.formatting", STYLE_NAME, AuthorYearPlainStyle, force=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
