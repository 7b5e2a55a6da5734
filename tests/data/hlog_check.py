"""Reads a chatload latency.hlog with HdrHistogram_py (the HdrHistogram project's Python
implementation, PyPI `hdrhistogram`), adds up each tag's interval histograms, and prints
count, p99 and max per tag as JSON: an independent reader of the interval log format."""
import json
import math
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

HOUR_US = 3600 * 10**6
totals = {}
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, HOUR_US, 3))
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag()
    if "/" in tag:
        continue  # a pattern's own histogram (p<index>/<metric>); the run's are checked
    if tag not in totals:
        totals[tag] = HdrHistogram(1, 100 * HOUR_US, 3)
    totals[tag].add(h)


def p99(h):
    # The nearest rank, ceil(0.99 n), as chatload and the Rust crate count it (the Python
    # reader rounds the rank instead; asking for that rank exactly gives the same sample).
    n = h.get_total_count()
    return h.get_value_at_percentile(math.ceil(0.99 * n) / n * 100)


print(json.dumps({
    tag: [h.get_total_count(), p99(h), h.get_max_value()]
    for tag, h in totals.items()
}))
