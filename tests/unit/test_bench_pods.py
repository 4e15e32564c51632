"""bench/pods' own logic: nearest-rank percentiles and the flags of a run on a lab that
is already up (`--reuse NAME --lab-network CIDR`)."""

from __future__ import annotations

import pytest

from bench.pods.run import main, percentile

pytestmark = pytest.mark.unit


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0, 99.0, 100.0)
    assert percentile([3.0], 99) == 3.0


def test_reusing_a_lab_needs_its_network(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--reuse", "h10p"])
    assert exited.value.code == 2
    assert "--reuse NAME needs --lab-network CIDR" in capsys.readouterr().err
