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
import java.util.function.Function;
import java.util.stream.Stream;

import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TableJoined;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs table-table joins by foreign key through Kafka Streams' own TopologyTestDriver, one
 * driver per case, all cases in one JVM.
 *
 * <pre>
 * java -cp ... oracle.ForeignKeyJoinOracle CASES.json RESULTS.json [STATE_PARENT]
 * </pre>
 *
 * CASES.json: {"cases": [case, ...]}, a case being
 * <pre>
 * {"id": "f1", "how": "inner" | "left", "store": null | "name",
 *  "left_filter": null | {"mod": 3, "rem": 0},
 *  "records": [{"topic": "left" | "right", "key": "a", "value": 7 | null}, ...]}
 * </pre>
 * Both tables have string keys and long values and are materialized ("left", "right"). With
 * left_filter, the left table is first filtered, without a store, to the values v with
 * floorMod(v, mod) != rem. A left value v names the right key "k" + floorMod(v, 5), or no
 * foreign key (null) when floorMod(v, 5) == 0. The result is the string "L|R" (a missing
 * right side "null"), materialized in "store" when given; it is written to "out". Record
 * caches are off, so every update reaches the output.
 *
 * RESULTS.json: {"results": [{"id", "outputs": [{"input": index of the record piped just
 * before, "key", "value": string | null}, ...], "error": null | "what was thrown"}]}.
 */
public final class ForeignKeyJoinOracle {
    private static final String OUT = "out";

    private ForeignKeyJoinOracle() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: ForeignKeyJoinOracle CASES.json RESULTS.json [STATE_PARENT]");
            System.exit(2);
        }
        final ObjectMapper json = new ObjectMapper();
        final JsonNode cases = json.readTree(new File(args[0])).get("cases");
        final Path stateRoot = args.length == 3
            ? Files.createTempDirectory(Path.of(args[2]), "fk-oracle-")
            : Files.createTempDirectory("fk-oracle-");
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
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "fk-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(final JsonNode c) {
        final StreamsBuilder builder = new StreamsBuilder();
        KTable<String, Long> left = source(builder, "left");
        final JsonNode filter = c.get("left_filter");
        if (filter != null && !filter.isNull()) {
            final long mod = filter.get("mod").asLong();
            final long rem = filter.get("rem").asLong();
            left = left.filter((k, v) -> Math.floorMod(v, mod) != rem);
        }
        final KTable<String, Long> right = source(builder, "right");
        final Function<Long, String> foreignKey =
            v -> Math.floorMod(v, 5L) == 0 ? null : "k" + Math.floorMod(v, 5L);
        final ValueJoiner<Long, Long, String> joiner = (l, r) -> l + "|" + r;
        final boolean inner = "inner".equals(c.get("how").asText());
        final JsonNode store = c.get("store");
        final TableJoined<String, String> named = TableJoined.as("fk");
        final KTable<String, String> result;
        if (store != null && !store.isNull()) {
            final Materialized<String, String, KeyValueStore<Bytes, byte[]>> materialized =
                Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as(store.asText())
                    .withKeySerde(Serdes.String()).withValueSerde(Serdes.String());
            result = inner
                ? left.join(right, foreignKey, joiner, named, materialized)
                : left.leftJoin(right, foreignKey, joiner, named, materialized);
        } else {
            result = inner
                ? left.join(right, foreignKey, joiner, named)
                : left.leftJoin(right, foreignKey, joiner, named);
        }
        result.toStream().to(OUT, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    private static KTable<String, Long> source(final StreamsBuilder builder, final String topic) {
        return builder.table(topic, Consumed.with(Serdes.String(), Serdes.Long()),
            Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(topic)
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()));
    }

    private static void deleteTree(final Path root) throws IOException {
        try (Stream<Path> paths = Files.walk(root)) {
            for (final Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
