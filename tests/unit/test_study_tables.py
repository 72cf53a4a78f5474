"""The study report's tables: swept parameters, their axes, metric units, text wrapping."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from reports.metric_axes import metric_axis
from reports.study_cover import wrap
from reports.sweep_tables import key_label, number_text, split_metrics, swept_params

MEM0, MEM1, SIZE = "machine.nodes[0].memory", "machine.nodes[1].memory", "workloads[0].size"


def _points(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[MEM0, MEM1, SIZE])


def test_keys_set_alike_at_every_point_are_one_parameter() -> None:
    points = _points([("512MiB", "512MiB", "1GiB"), ("512MiB", "512MiB", "2GiB"),
                      ("2GiB", "2GiB", "1GiB"), ("1GiB", "1GiB", "2GiB")])
    memory, size = swept_params(points, [MEM0, MEM1, SIZE])
    assert memory.keys == (MEM0, MEM1) and memory.name == "machine.nodes[0,1].memory"
    assert memory.values == ("512MiB", "1GiB", "2GiB")  # by magnitude, not as listed
    assert memory.label == "machine.nodes[0,1].memory (GiB)"
    assert [memory.position(v) for v in memory.values] == [0.5, 1.0, 2.0]
    assert size.keys == (SIZE,) and size.value_text("1GiB") == "1 GiB"


def test_keys_that_differ_somewhere_are_two_parameters() -> None:
    points = _points([("512MiB", "512MiB", "1GiB"), ("512MiB", "1GiB", "2GiB"),
                      ("1GiB", "1GiB", "1GiB")])
    names = [p.name for p in swept_params(points, [MEM0, MEM1, SIZE])]
    assert names == [MEM0, MEM1, SIZE]
    same = _points([("512MiB", "0.5GiB", "1GiB"), ("1GiB", "1024MiB", "1GiB")])
    memory, size = swept_params(same, [MEM0, MEM1, SIZE])
    assert memory.describe() == f"{MEM0} = 512MiB, 1GiB; {MEM1} = 0.5GiB, 1024MiB"
    assert size.describe() == f"{SIZE} = 1GiB"


def test_values_of_no_unit_are_categories_in_the_sweep_order() -> None:
    points = pd.DataFrame({"workloads[2].mode": ["scattered", "nofree"],
                           "workloads[3].vmap_stack": ["true", "false"]})
    (param,) = swept_params(points, list(points.columns))
    assert param.kind == "category" and not param.numeric and param.unit == ""
    assert param.values == ("scattered", "nofree") and param.position("nofree") == 1.0
    assert param.name == "workloads[2].mode & workloads[3].vmap_stack"


def test_rates_durations_and_numbers_get_their_units() -> None:
    for values, unit, first in ((["25/s", "75/s"], "/s", 25.0), (["500ms", "2s"], "s", 0.5),
                                (["48000", "56000"], "", 48000.0)):
        (param,) = swept_params(pd.DataFrame({"k": values}), ["k"])
        assert param.unit == unit and param.position(values[0]) == first
    assert key_label(["a[0].b[1]", "a[0].b[2]"]) == "a[0].b[1,2]"
    assert number_text(48000.0) == "48,000" and number_text(0.125) == "0.125"


def test_metric_axes_name_their_units() -> None:
    assert metric_axis("failure_rate.thp.order9", 0.5).factor == 100.0
    assert metric_axis("failure_rate.thp.order9", 0.5).label.endswith("(%)")
    stall = metric_axis("stall_s.forks", 0.02)
    assert stall.label.endswith("(ms)") and stall.factor == 1000.0
    free = metric_axis("free_pages", 3 * 262144)  # 3 GiB of 4 KiB pages
    assert free.label.endswith("(GiB)") and free.factor * 262144 == 1.0
    assert metric_axis("hugetlb[0].obtained.node1", 900).count
    assert metric_axis("latency_p99_ns.fast", 2500).label.endswith("(µs)")


def test_constant_and_empty_metrics_are_not_plotted() -> None:
    nan = float("nan")
    summary = pd.DataFrame({
        "point": [0, 1] * 4, "metric": ["a", "a", "b", "b", "c", "c", "d", "d"],
        "n": [3, 3, 3, 3, 0, 0, 3, 3], "mean": [1.0, 2.0, 0.0, 0.0, nan, nan, 1.0, 2.0],
        "std": [0.5, 0.5, 0.0, 0.0, nan, nan, 0.5, 0.5],
        "ci_low": [0.5, 1.5, 0.0, 0.0, nan, nan, 0.5, 1.5],
        "ci_high": [1.5, 2.5, 0.0, 0.0, nan, nan, 1.5, 2.5]})
    split = split_metrics(summary)
    assert split.plotted == ("a",) and split.constant == (("b", 0.0),)
    assert split.same == (("d", "a"),) and split.empty == ("c",)
    summary.loc[7, "ci_high"] = 2.6
    assert split_metrics(summary).plotted == ("a", "d")


@given(st.lists(st.text(alphabet="abcdefghij`%()-_.,:;=0123456789", min_size=1,
                        max_size=30), min_size=1, max_size=40),
       st.floats(min_value=8, max_value=22), st.floats(min_value=3, max_value=9))
def test_wrapped_lines_fit_and_give_the_text_back(words: list[str], size: float,
                                                  width: float) -> None:
    text = " ".join(words)
    lines = wrap(text, size, width)
    assert " ".join(lines).split() == text.split() or any(len(w) > 20 for w in words)
    chars = max(20, int(width * 72 / (size * 0.6)))
    assert all(len(line) <= chars for line in lines)
