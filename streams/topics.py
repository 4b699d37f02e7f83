"""Topic names and how they are laid out.

Input topics share one partition count so Faust co-assigns partition *p* of
each to the same worker: a customer's purchases, interactions and profile
events (all keyed by ``customer_id``) are then processed by one owner, which
is what lets per-customer read-modify-write in Redis go without locks.
"""
from __future__ import annotations

from dataclasses import dataclass

from streams.config import Settings

__all__ = ["INPUT_TOPICS", "TopicSpec", "topic_specs"]

#: The webshop's topics, in the order the event contract lists them.
INPUT_TOPICS = ("purchases", "interactions", "customers")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes, with its partition count."""
    specs = [TopicSpec(settings.topic(name), settings.partitions) for name in INPUT_TOPICS]
    specs.append(TopicSpec(settings.topic("deadletter"), 1))
    specs.append(TopicSpec(settings.topic("erasures"), 1))
    specs.append(TopicSpec(settings.topic("training-examples"), 1))  # one global trainer sees every example
    specs.append(TopicSpec(settings.topic("score-changes"), 1))
    specs.append(TopicSpec(settings.topic("segment-features"), 1))  # one global segment trainer
    specs.append(TopicSpec(settings.topic("segment-events"), 1))    # births, deaths, renames of segments
    specs.append(TopicSpec(settings.topic("alerts"), 1))            # customer and aggregate alerts, one delivery
    specs.append(TopicSpec(settings.topic("alerts-deadletter"), 1))  # alerts no webhook attempt delivered
    return specs
