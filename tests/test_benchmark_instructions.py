"""The instruction-count workloads (``python -m benchmarks.instructions``) run, ours and the
reference's, so that they cannot rot; CI has no valgrind to count them with."""

from __future__ import annotations

import pytest
from benchmarks import instructions


@pytest.mark.parametrize("reference", [False, True], ids=["sockjs-asgi", "bare"])
@pytest.mark.parametrize("name", list(instructions.WORKLOADS))
def test_a_workload_runs(name: str, reference: bool) -> None:
    instructions.run_workload(name, 2, reference)


def test_an_unknown_workload_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        instructions.main(["nothing"])
    assert exited.value.code == 2
    assert "no workload nothing" in capsys.readouterr().err
