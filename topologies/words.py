"""Split sentences into words: the stateless first half of word count.

Reads text lines from `sentences` and writes one record per word to `words`, keyed by the
lower-cased word, so that every occurrence of a word lands in the same partition.

    processor run topologies.words --bootstrap-servers 127.0.0.1:9092
"""

import re

from processor import Topology, serdes

WORD = re.compile(r"[\w']+")

topology = Topology("words")  # the name is the default application id

(
    topology.stream("sentences", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .filter(lambda _key, line: bool(line and line.strip()))
    .flat_map(lambda _key, line: [(word, word) for word in WORD.findall(line.lower())])
    .to("words")
)
