"""GFP bit values are defined once, in simcore/mm/gfp.py, and nowhere else.

The ``__GFP_*`` values belong to the kernel (include/linux/gfp_types.h, 6.1) and to
:class:`simcore.mm.gfp.GFP`; a module that needs one as a plain int for its hot path
derives it (``int(GFP.THISNODE)``), so the two cannot drift apart. This scans the
sources of ``simcore/`` and ``workloads/`` (gfp.py excepted) for

* a name containing ``GFP`` bound to a value built only from literals
  (``GFP_THISNODE = 0x200000``), and
* a literal used as a bit mask on a gfp value (``gfp & 0x200``, ``gfp_mask | 0x40000``).

ALLOC_* flags are not GFP bits even where the kernel makes them equal (ALLOC_KSWAPD and
__GFP_KSWAPD_RECLAIM): they live in simcore/mm/constants.py under their own names.
"""

from __future__ import annotations

import ast
from pathlib import Path

from simcore.mm.gfp import GFP

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("simcore", "workloads")
BIT_OPS = (ast.BitAnd, ast.BitOr, ast.BitXor)


def _literal_only(node: ast.expr) -> bool:
    """True if ``node`` is built from int constants and operators alone."""
    parts = list(ast.walk(node))
    has_int = any(isinstance(p, ast.Constant) and isinstance(p.value, int) for p in parts)
    refs = any(isinstance(p, ast.Name | ast.Attribute | ast.Call) for p in parts)
    return has_int and not refs


_BINOPS = {ast.BitAnd: int.__and__, ast.BitOr: int.__or__, ast.BitXor: int.__xor__,
           ast.LShift: int.__lshift__, ast.RShift: int.__rshift__, ast.Add: int.__add__}


def _value(node: ast.expr) -> int:
    """The int a literal-only expression stands for (no eval)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return ~_value(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError(f"not a literal int expression: {ast.unparse(node)}")


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def gfp_copies(source: str, filename: str) -> list[tuple[str, str, int]]:
    """``(where, name or mask expression, value)`` of every private GFP bit value."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if "GFP" in _name_of(target).upper() and _literal_only(node.value):
                    value = _value(node.value)
                    found.append((f"{filename}:{node.lineno}", _name_of(target), value))
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, BIT_OPS):
            left = node.left if isinstance(node, ast.BinOp) else node.target
            right = node.right if isinstance(node, ast.BinOp) else node.value
            for var, lit in ((left, right), (right, left)):
                if "GFP" in _name_of(var).upper() and _literal_only(lit):
                    found.append((f"{filename}:{node.lineno}", ast.unparse(node),
                                  _value(lit)))
    return found


def _scan() -> list[tuple[str, str, int]]:
    found = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != "simcore/mm/gfp.py":
                found.extend(gfp_copies(path.read_text(), rel))
    return found


def test_scanner_finds_copies_and_spares_derived_values() -> None:
    src = (
        "GFP_THISNODE = 0x200000\n"
        "_GFP_BITS: int = 0x40000 | 0x800\n"
        "GFP_ATOMIC_BIT = int(GFP.ATOMIC)\n"
        "def f(gfp, gfp_mask, flags):\n"
        "    gfp_mask &= ~0x200\n"
        "    return gfp & 0x200, flags & 0x10, gfp & GFP_THISNODE\n"
    )
    assert [(name, value) for _, name, value in gfp_copies(src, "x.py")] == [
        ("GFP_THISNODE", 0x200000),
        ("_GFP_BITS", 0x40800),
        ("gfp_mask &= ~512", ~0x200),
        ("gfp & 512", 0x200),
    ]


def test_gfp_flag_values_are_distinct_single_bits() -> None:
    values = [int(m) for m in GFP]
    assert all(v and v & (v - 1) == 0 for v in values)
    assert len(set(values)) == len(values) == len(GFP.__members__)


def test_no_gfp_bit_value_is_defined_outside_gfp_py() -> None:
    assert _scan() == []
