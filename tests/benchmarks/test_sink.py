"""``benchmarks.sink``: the loopback ingest counts traces in each peer's wire format."""

from __future__ import annotations

import json

from benchmarks.sink import count_envelope


def _envelope(*items: tuple[dict, bytes]) -> bytes:
    out = [json.dumps({"event_id": "0" * 32}).encode()]
    for header, payload in items:
        out += [json.dumps(header).encode(), payload]
    return b"\n".join(out) + b"\n"


def test_a_sentry_envelope_counts_its_transaction_items_not_their_payloads() -> None:
    transaction = json.dumps({"type": "transaction", "spans": []}).encode()
    body = _envelope(({"type": "transaction", "length": len(transaction)}, transaction),
                     ({"type": "client_report"}, b'{"type": "transaction"}'),
                     ({"type": "transaction"}, transaction))
    assert count_envelope(body) == 2
