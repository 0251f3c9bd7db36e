"""One catalogue of dead-letter reasons: every reason the code gives is a ``Reason`` member."""

from __future__ import annotations

import ast
from pathlib import Path

import oml
from oml.codecs.errors import REASONS, Reason, internal_error

ROOT = Path(oml.__file__).parent.parent
CALLS = {  # callee name -> position of the reason argument
    "dead_letter": 1,
    "produce_dead_letter": 3,
    "InvalidInput": 1,
    "BadMessage": 1,
}


def reason_literals() -> list[tuple[str, str]]:
    """(where, reason) of each string literal given as a reason in oml/ and algorithms/."""
    found = []
    for path in [*ROOT.joinpath("oml").rglob("*.py"), *ROOT.joinpath("algorithms").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            args = list(node.args)
            position = CALLS.get(name or "")
            values = [k.value for k in node.keywords if k.arg == "reason"]
            if position is not None and len(args) > position:
                values.append(args[position])
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", v.value))
    return found


def test_every_reason_given_is_in_the_catalogue() -> None:
    found = reason_literals()
    assert found  # the scan sees reason literals (learners give theirs as strings)
    missing = [(where, r) for where, r in found if r not in set(Reason)]
    assert missing == []


def test_reasons_are_their_strings() -> None:
    assert Reason.MALFORMED == "malformed" and f"{Reason.CLOCK_SKEW}" == "clock_skew"
    assert repr(Reason.TOO_LARGE) == "'too_large'"
    assert set(REASONS) <= set(Reason)
    assert all(r.value.isidentifier() and r.value.islower() for r in Reason)


def test_an_internal_error_names_the_exception() -> None:
    bad = internal_error(3, KeyError("x" * 5000))
    assert bad.index == 3 and bad.reason == Reason.INTERNAL_ERROR
    assert bad.message.startswith("KeyError: ") and len(bad.message) <= 1000
