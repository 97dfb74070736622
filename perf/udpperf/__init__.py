"""The pieces of perf/compare.py: common, runner, steps, report, plots."""
