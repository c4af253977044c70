"""Spool files: written whole, read back, and the experiment their header names."""

from __future__ import annotations

import pytest

from routetrace.core.destination import Experiment
from routetrace.export.spool import experiment_of, read_spool_file, spool_batch


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        pytest.param(Experiment(name="chat-agent"), Experiment(name="chat-agent"), id="by name"),
        pytest.param(Experiment(experiment_id="42"), Experiment(experiment_id="42"), id="by id"),
    ],
)
def test_a_spooled_batch_names_the_experiment_it_was_meant_for(tmp_path, destination,
                                                                expected):
    path = spool_batch(tmp_path, "http://mlflow:5000", destination, [])
    header, traces = read_spool_file(path)
    assert experiment_of(header) == expected
    assert traces == []
