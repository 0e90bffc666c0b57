"""A griffe extension for the API pages: the docstrings' Sphinx roles as Markdown code.

The docstrings are NumPy-style and cross-reference with Sphinx roles (``:class:`~a.B```,
``:func:`f```, ``:math:`x```), which Markdown would print as written. This turns each into a
code span of its target (``~`` keeps the last part, as Sphinx does): ``:class:`~a.B``` -> `B`.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|exc|data|const|math|ref|doc):"
                   r"`(?P<tilde>~?)(?P<target>[^`]+)`")


def _code(m: re.Match) -> str:
    target = m["target"]
    if m["tilde"]:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class RstRoles(Extension):
    """Rewrite Sphinx roles in every docstring as code spans."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
