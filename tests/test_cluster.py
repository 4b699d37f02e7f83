"""The same pipeline on a 3-master Redis Cluster: what it serves equals the single-Redis results, and no
script touches keys of two hash slots (streams/keyspace.py, docs/architecture.md)."""
from __future__ import annotations

import tests.test_items as item_tests


def test_item_counts_on_a_cluster_equal_a_batch_recount(cluster_settings, cluster_client, output_dir):
    item_tests.test_served_counts_and_top_neighbours_equal_a_batch_recount(cluster_settings, cluster_client,
                                                                          output_dir)
