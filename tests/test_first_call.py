"""The benchmark's first-call figures: measured in a fresh process, written as a table."""

from __future__ import annotations

import torch

from vbkernels.benchmark import first_call


def test_first_call_is_measured_in_a_fresh_process():
    records = first_call.measure(torch.device("cpu"), names=["numpy"])
    record = records["numpy"]
    assert set(record) == {"import_s", "first_s", "second_s", "compiler_imported"}, record
    assert record["import_s"] > 0 and record["first_s"] > 0 and record["second_s"] > 0
    assert record["compiler_imported"] is False
    table = "\n".join(first_call.markdown(records))
    assert "| numpy |" in table and "First call" in table


def test_failed_process_is_reported_not_raised():
    records = first_call.measure(torch.device("cpu"), names=["no-such-backend"])
    assert "error" in records["no-such-backend"]
    assert "failed" in "\n".join(first_call.markdown(records))
    assert first_call.markdown(None) == []


def test_interpreters_are_left_out_on_cpu():
    assert "triton" not in first_call.backends_on(torch.device("cpu"))
