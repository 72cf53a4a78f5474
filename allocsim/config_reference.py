"""The README's reference of every experiment-file key, generated from the schema catalog.

``python -m allocsim.config_reference`` rewrites the text between the README's
``config-reference`` markers from :func:`workloads.registry.experiment_schema`; a test
fails when the README's text is not what this module makes, so the reference cannot
drift from the parsers (whose keys come from the same catalog).
"""

from __future__ import annotations

from pathlib import Path

from allocsim.describe import default_text, type_text
from simcore.atomic import atomic_write_text
from simcore.config.schema import DURATION, GFP, RATE, SIZE, Derived, Key, flatten

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->\n"
HEADER = "| key | type | default | what |\n|---|---|---|---|\n"
COMMON = (SIZE, DURATION, RATE, GFP)
"""Types whose unit is said once, above the tables (:data:`UNITS`)."""
UNITS = ("A **size** is `64MiB`, `4GiB`, `4k`, `1GB`, `512pages` or a byte count; a "
         "**duration** has a unit: `10ms`, `2.5s`, `100us`, `50ns`, `1min`, `1h`; a **rate** "
         "is events per second: `200/s`, `5/ms` or a number; **gfp flags** are spelt as in "
         "the kernel: `GFP_KERNEL|__GFP_COMP`. `[]` in a key path stands for any entry of a "
         "list.\n")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default_cell(key: Key) -> str:
    if key.required:
        return "**required**"
    if isinstance(key.default, Derived):
        return "" if key.default.text == "-" else key.default.text
    return f"`{default_text(key)}`"


def _type_cell(key: Key) -> str:
    """The type; the common units are explained once, above the tables."""
    if any(key.type.unit == t.unit for t in COMMON):
        return key.type.text
    return type_text(key)


def _row(path: str, key: Key) -> str:
    return (f"| `{_cell(path)}` | {_cell(_type_cell(key))} | {_cell(_default_cell(key))} | "
            f"{_cell(key.help)} |\n")


def _table(rows: list[tuple[str, Key]]) -> str:
    return HEADER + "".join(_row(p, k) for p, k in rows)


def reference_markdown(root: Key) -> str:
    """The units, the top-level keys, then a table per section and per workload kind."""
    scalars = [(k.name, k) for k in root.keys if not k.keys and not k.open_keys]
    out = [UNITS, "#### Top level\n\n" + _table(scalars)]
    for section in root.keys:
        if (section.name, section) in scalars:
            continue
        rows = [(p, k) for p, k in flatten(section, section.name) if "[type=" not in p]
        out.append(f"#### `{section.name}`\n\n{section.help}\n\n" + _table(rows))
        for kind, text, _ in section.variants:
            prefix = f"{section.name}[type={kind}]."
            kind_rows = [(p[len(prefix):], k) for p, k in flatten(section, section.name)
                         if p.startswith(prefix)]
            out.append(f"#### `{section.name}` entries with `type: {kind}`\n\n{text} Their "
                       "keys besides `name` and `type`:\n\n" + _table(kind_rows))
    return "\n".join(out)


def readme_with_reference(readme: str, reference: str) -> str:
    """``readme`` with the text between the markers replaced by ``reference``."""
    head, sep, rest = readme.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError("README.md has no config-reference markers")
    return f"{head}{START}{reference}{END}{tail}"


def generated_readme(readme: str) -> str:
    """The README with its reference section as the catalog makes it now."""
    from workloads.registry import experiment_schema

    return readme_with_reference(readme, reference_markdown(experiment_schema()))


def main() -> int:
    """Rewrite README.md's reference section."""
    atomic_write_text(README, generated_readme(README.read_text(encoding="utf-8")))
    print(f"wrote the config reference into {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
