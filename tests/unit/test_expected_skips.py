"""A skip fails the run unless tests/expected_skips.txt allows it: a broken `import vllm` once passed CI as
a row of importorskip skips."""

from __future__ import annotations

from tests.conftest import ROOT, expected_skips

HOOKS = "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"


def test_only_listed_skips_pass(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(
        test_broken_install='import pytest\npytest.importorskip("no_such_module_here")\n\ndef test_a():\n    pass\n',
        test_guards="""
import pytest

def test_skips_in_the_test():
    pytest.skip("a guard")

@pytest.mark.skipif(True, reason="a marker")
def test_skips_by_marker():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    assert False
""",
    )
    (pytester.path / "tests/gpu").mkdir(parents=True)
    (pytester.path / "tests/gpu/test_cuda.py").write_text(
        "import pytest\n\ndef test_gpu():\n    pytest.skip('no CUDA')\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--continue-on-collection-errors", "-rA")
    # the module-level importorskip and the marker: errors; the skip inside the test: a failure; the xfail and the
    # listed GPU test: as before
    result.assert_outcomes(errors=2, failed=1, skipped=1, xfailed=1)
    assert result.ret != 0
    out = result.stdout.str()
    assert "test_broken_install.py skipped (could not import 'no_such_module_here'" in out
    assert "test_skips_by_marker skipped (a marker), and tests/expected_skips.txt does not allow it" in out
    assert "SKIPPED [1] tests/gpu/test_cuda.py:4: no CUDA" in out


def test_the_list_is_short_and_says_why():
    lines = [line for line in (ROOT / "tests/expected_skips.txt").read_text().splitlines() if line.strip()]
    entries = [line for line in lines if not line.startswith("#")]
    assert len(entries) == len(expected_skips()) <= 5
    assert all("#" in line and line.split("#", 1)[1].strip() for line in entries), "every entry says why"
