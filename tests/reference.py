"""Independent recomputations the tests compare the stream with (pandas over the raw events, no pipeline code)."""
from __future__ import annotations

import pandas as pd

from schemas.money import to_minor_units


def purchases_frame(events) -> pd.DataFrame:
    """One row per purchase event (order or refund): who, kind, event time, order id, amount in minor units
    (the sum of qty x unit price), the skus."""
    return pd.DataFrame([{"customer_id": e["customer_id"], "kind": e["kind"], "ts": e["ts"], "order_id": e["order_id"],
                          "amount": sum(i["qty"] * to_minor_units(i["unit_price"], e["currency"]) for i in e["items"]),
                          "skus": [i["sku"] for i in e["items"]]}
                         for topic, e in events if topic == "purchases"])
