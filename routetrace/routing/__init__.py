"""The route table: which requests are traced, and into which experiment.

>>> from routetrace.routing import load
>>> table = load("routetrace.toml")
>>> table.match("/chat/42", "GET").experiment
Experiment(name='chat-agent', experiment_id=None)
"""

from routetrace.routing.config import ConfigError, from_mapping, load, load_file
from routetrace.routing.explain import describe, explain
from routetrace.routing.patterns import PatternError, compile_pattern
from routetrace.routing.table import Match, RouteTable, Rule

__all__ = [
    "ConfigError",
    "Match",
    "PatternError",
    "RouteTable",
    "Rule",
    "compile_pattern",
    "describe",
    "explain",
    "from_mapping",
    "load",
    "load_file",
]
