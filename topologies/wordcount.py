"""Word count: how often each word has been seen, kept in a store and written to `word-counts`.

Reads text lines from `sentences`, splits them into lower-cased words, re-keys each by its word
(through a repartition topic, so every occurrence of a word is counted by one task) and counts.
Every update goes out as (word, count) with the count as a 64-bit integer.

    processor run topologies.wordcount --bootstrap-servers 127.0.0.1:9092
"""

import re

from processor import Topology, serdes

WORD = re.compile(r"[\w']+")

topology = Topology("wordcount")

(
    topology.stream("sentences", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .flat_map_values(lambda line: WORD.findall(line.lower()) if line else [])
    .group_by(lambda _key, word: word, name="words")
    .count(name="counts")
    .to_stream()
    .to("word-counts")
)
