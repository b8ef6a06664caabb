"""The complexity gate (tools/complexity.py): what it measures with ruff, and that its baseline can only shrink."""

from pathlib import Path

from tools.complexity import compare, enclosing_function, measure, read_baseline, write_baseline

BRANCHY = """
class Router:
    def route(self, n):
        if n == 1:
            return 1
        if n == 2:
            return 2
        if n == 3:
            return 3
        if n == 4:
            return 4
        if n == 5:
            return 5
        if n == 6:
            return 6
        if n == 7:
            return 7
        if n == 8:
            return 8
        if n == 9:
            return 9
        if n == 10:
            return 10
        return 0


def small(a, b, c, d, e, f):
    return a
"""


def test_measure_keys_each_violation_by_path_rule_and_qualified_function(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "router.py").write_text(BRANCHY)

    assert measure(tmp_path) == {
        "pkg/router.py:C901:Router.route": 11,
        "pkg/router.py:PLR0911:Router.route": 11,
        "pkg/router.py:PLR0913:small": 6,
        "pkg/router.py:PLR0917:small": 6,
    }


def test_enclosing_function_is_the_innermost_def_or_class(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text("X = 1\n\n\nclass A:\n    def f(self):\n        def g():\n            pass\n\n    Y = 2\n")

    assert [enclosing_function(source, row) for row in (1, 4, 5, 7, 9)] == ["<module>", "A", "A.f", "A.f.g", "A"]


def test_the_gate_passes_only_when_the_code_matches_the_baseline():
    baseline = {"a.py:C901:f": 12, "a.py:PLR0913:g": 7}

    assert compare(baseline, dict(baseline)) == []
    new = compare(baseline, baseline | {"b.py:C901:h": 11})
    grew = compare(baseline, baseline | {"a.py:C901:f": 13})
    shrank = compare(baseline, baseline | {"a.py:C901:f": 11})
    gone = compare(baseline, {"a.py:PLR0913:g": 7})
    assert [len(new), len(grew), len(shrank), len(gone)] == [1, 1, 1, 1]
    assert new[0].startswith("new:") and "b.py:C901:h:11" in new[0]
    assert grew[0].startswith("grew:") and "12 -> 13" in grew[0]
    assert shrank[0].startswith("shrank:") and "12 -> 11" in shrank[0]
    assert gone[0].startswith("gone:") and "a.py:C901:f:12" in gone[0]


def test_the_baseline_file_round_trips(tmp_path: Path):
    found = {"layers/x.py:C901:Store.claim": 17, "ops/y.py:PLR0124:<module>": 2}
    path = tmp_path / "baseline.txt"

    write_baseline(found, path)

    assert read_baseline(path) == found
    assert read_baseline(tmp_path / "absent.txt") == {}
