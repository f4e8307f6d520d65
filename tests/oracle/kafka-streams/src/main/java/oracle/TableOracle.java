package oracle;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Stream;

import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedTable;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs table operations (filter, mapValues, groupBy + count/reduce/aggregate, table-table
 * joins) through Kafka Streams' own TopologyTestDriver, one driver per case, all cases in one
 * JVM.
 *
 * <pre>
 * java -cp ... oracle.TableOracle CASES.json RESULTS.json [STATE_PARENT]
 * </pre>
 *
 * CASES.json: {"cases": [case, ...]}, a case being
 * <pre>
 * {"id": "j1",
 *  "left_ops": [op, ...], "right_ops": [op, ...],   (applied in order to each source table)
 *  "join": null | {"how": "inner" | "left" | "outer", "store": null | "name"},
 *  "group": null | {"mod": 3, "agg": "count" | "reduce" | "aggregate", "store": "name"},
 *  "records": [{"topic": "left" | "right", "key": "a", "value": 1 | null}, ...]}
 * </pre>
 * an op being {"op": "filter" | "filter_not", "mod": 2, "rem": 0, "store": null | "name"}
 * (keeps the values v with floorMod(v, mod) == rem) or {"op": "map_values", "mul": 10,
 * "add": 1, "store": null | "name"} (v * mul + add). Source tables are materialized (stores
 * "left" and "right"), as every table of processor's is. Values are longs; a join's result is
 * the string "L|R" (a missing side "null"); group_by groups by "g" + floorMod(v, mod), reduce
 * and aggregate sum (aggregate from 0). With a join or group the result table is written, else
 * the left table after its ops. The output value is the result's string form, or null.
 * Record caches are off, so every update reaches the output.
 *
 * RESULTS.json: {"results": [{"id", "outputs": [{"input": index of the record piped just
 * before, "key", "value": string | null}, ...], "error": null | "what was thrown"}]}.
 */
public final class TableOracle {
    private static final String OUT = "out";

    private TableOracle() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: TableOracle CASES.json RESULTS.json [STATE_PARENT]");
            System.exit(2);
        }
        final ObjectMapper json = new ObjectMapper();
        final JsonNode cases = json.readTree(new File(args[0])).get("cases");
        final Path stateRoot = args.length == 3
            ? Files.createTempDirectory(Path.of(args[2]), "table-oracle-")
            : Files.createTempDirectory("table-oracle-");
        final List<Map<String, Object>> results = new ArrayList<>();
        try {
            int n = 0;
            for (final JsonNode c : cases) {
                results.add(run(c, stateRoot.resolve(Integer.toString(n++))));
            }
        } finally {
            deleteTree(stateRoot);
        }
        json.writeValue(new File(args[1]), Map.of("results", results));
    }

    private static Map<String, Object> run(final JsonNode c, final Path stateDir) {
        final Map<String, Object> result = new LinkedHashMap<>();
        result.put("id", c.get("id").asText());
        final List<Map<String, Object>> outputs = new ArrayList<>();
        String error = null;
        try (TopologyTestDriver driver = new TopologyTestDriver(topology(c), config(stateDir))) {
            final Map<String, TestInputTopic<String, Long>> inputs = Map.of(
                "left", driver.createInputTopic("left", new StringSerializer(), new LongSerializer()),
                "right", driver.createInputTopic("right", new StringSerializer(), new LongSerializer()));
            final TestOutputTopic<String, String> out = driver.createOutputTopic(
                OUT, new StringDeserializer(), new StringDeserializer());
            int index = 0;
            try {
                for (final JsonNode r : c.get("records")) {
                    final Long value = r.get("value").isNull() ? null : r.get("value").asLong();
                    inputs.get(r.get("topic").asText()).pipeInput(r.get("key").asText(), value, index);
                    for (final TestRecord<String, String> o : out.readRecordsToList()) {
                        final Map<String, Object> output = new LinkedHashMap<>();
                        output.put("input", index);
                        output.put("key", o.key());
                        output.put("value", o.value());
                        outputs.add(output);
                    }
                    index++;
                }
            } catch (final RuntimeException e) {
                error = "record " + index + ": " + e;
            }
        }
        result.put("outputs", outputs);
        result.put("error", error);
        return result;
    }

    private static Properties config(final Path stateDir) {
        final Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "table-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(final JsonNode c) {
        final StreamsBuilder builder = new StreamsBuilder();
        final KTable<String, Long> left = ops(source(builder, "left"), c.get("left_ops"));
        final KTable<String, String> result;
        final JsonNode join = c.get("join");
        final JsonNode group = c.get("group");
        if (join != null && !join.isNull()) {
            final KTable<String, Long> right = ops(source(builder, "right"), c.get("right_ops"));
            result = join(left, right, join);
        } else if (group != null && !group.isNull()) {
            result = group(left, group).mapValues(v -> v == null ? null : String.valueOf(v));
        } else {
            result = left.mapValues(v -> v == null ? null : String.valueOf(v));
        }
        result.toStream().to(OUT, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    private static KTable<String, Long> source(final StreamsBuilder builder, final String topic) {
        return builder.table(topic, Consumed.with(Serdes.String(), Serdes.Long()),
            Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(topic)
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()));
    }

    private static Materialized<String, Long, KeyValueStore<Bytes, byte[]>> longs(final String name) {
        return Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(name)
            .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long());
    }

    private static KTable<String, Long> ops(final KTable<String, Long> table, final JsonNode ops) {
        KTable<String, Long> current = table;
        if (ops == null) {
            return current;
        }
        for (final JsonNode op : ops) {
            final String store = op.has("store") && !op.get("store").isNull()
                ? op.get("store").asText() : null;
            switch (op.get("op").asText()) {
                case "filter", "filter_not" -> {
                    final long mod = op.get("mod").asLong();
                    final long rem = op.get("rem").asLong();
                    final boolean not = op.get("op").asText().equals("filter_not");
                    current = not
                        ? (store == null
                            ? current.filterNot((k, v) -> Math.floorMod(v, mod) == rem)
                            : current.filterNot((k, v) -> Math.floorMod(v, mod) == rem, longs(store)))
                        : (store == null
                            ? current.filter((k, v) -> Math.floorMod(v, mod) == rem)
                            : current.filter((k, v) -> Math.floorMod(v, mod) == rem, longs(store)));
                }
                case "map_values" -> {
                    final long mul = op.get("mul").asLong();
                    final long add = op.get("add").asLong();
                    current = store == null
                        ? current.mapValues(v -> v * mul + add)
                        : current.mapValues(v -> v * mul + add, longs(store));
                }
                default -> throw new IllegalArgumentException("op: " + op);
            }
        }
        return current;
    }

    private static KTable<String, String> join(
            final KTable<String, Long> left, final KTable<String, Long> right, final JsonNode join) {
        final ValueJoiner<Long, Long, String> joiner = (l, r) -> l + "|" + r;
        final String store = join.has("store") && !join.get("store").isNull()
            ? join.get("store").asText() : null;
        final Materialized<String, String, KeyValueStore<Bytes, byte[]>> m = store == null ? null
            : Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as(store)
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.String());
        return switch (join.get("how").asText()) {
            case "inner" -> m == null ? left.join(right, joiner) : left.join(right, joiner, m);
            case "left" -> m == null ? left.leftJoin(right, joiner) : left.leftJoin(right, joiner, m);
            case "outer" -> m == null ? left.outerJoin(right, joiner) : left.outerJoin(right, joiner, m);
            default -> throw new IllegalArgumentException("how: " + join.get("how"));
        };
    }

    private static KTable<String, Long> group(final KTable<String, Long> table, final JsonNode group) {
        final long mod = group.get("mod").asLong();
        final KGroupedTable<String, Long> grouped = table.groupBy(
            (k, v) -> KeyValue.pair("g" + Math.floorMod(v, mod), v),
            Grouped.with(Serdes.String(), Serdes.Long()));
        final String store = group.get("store").asText();
        return switch (group.get("agg").asText()) {
            case "count" -> grouped.count(longs(store));
            case "reduce" -> grouped.reduce((a, v) -> a + v, (a, v) -> a - v, longs(store));
            case "aggregate" -> grouped.aggregate(
                () -> 0L, (k, v, a) -> a + v, (k, v, a) -> a - v, longs(store));
            default -> throw new IllegalArgumentException("agg: " + group.get("agg"));
        };
    }

    private static void deleteTree(final Path root) throws IOException {
        try (Stream<Path> paths = Files.walk(root)) {
            for (final Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
