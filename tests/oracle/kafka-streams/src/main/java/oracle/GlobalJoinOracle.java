package oracle;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Stream;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KeyValueMapper;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs stream-global table joins through Kafka Streams' own TopologyTestDriver, one driver per
 * case, all cases in one JVM.
 *
 * <pre>
 * java -cp ... oracle.GlobalJoinOracle CASES.json RESULTS.json [STATE_PARENT]
 * </pre>
 *
 * CASES.json: {"cases": [case, ...]}, a case being
 * <pre>
 * {"id": "g1", "how": "inner" | "left",
 *  "records": [{"side": "table" | "stream", "key": "a" | null, "value": "..." | null,
 *               "ts": 0}, ...]}
 * </pre>
 * Table records go to the global table's topic, stream records to the stream's, in order.
 * The lookup key of a stream record with value v: null when v is null or "none", the record's
 * key when v is "key", else v. The joiner makes "v+row" ("v+null" without a row).
 *
 * RESULTS.json: {"results": [{"id", "outputs": [{"input": index of the record piped just before,
 * "key", "value", "ts"}, ...], "table": [[key, value], ...] (the global store at the end, by key),
 * "error": null | "what was thrown"}]}.
 */
public final class GlobalJoinOracle {
    private static final String TABLE = "table";
    private static final String STREAM = "stream";
    private static final String OUT = "out";
    private static final String STORE = "table-store";

    private GlobalJoinOracle() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: GlobalJoinOracle CASES.json RESULTS.json [STATE_PARENT]");
            System.exit(2);
        }
        final ObjectMapper json = new ObjectMapper();
        final JsonNode cases = json.readTree(new File(args[0])).get("cases");
        final Path stateRoot = args.length == 3
            ? Files.createTempDirectory(Path.of(args[2]), "global-oracle-")
            : Files.createTempDirectory("global-oracle-");
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

    static String lookup(final String key, final String value) {
        if (value == null || value.equals("none")) {
            return null;
        }
        return value.equals("key") ? key : value;
    }

    private static Map<String, Object> run(final JsonNode c, final Path stateDir) {
        final Map<String, Object> result = new LinkedHashMap<>();
        result.put("id", c.get("id").asText());
        final List<Map<String, Object>> outputs = new ArrayList<>();
        final List<List<String>> table = new ArrayList<>();
        String error = null;
        try (TopologyTestDriver driver = new TopologyTestDriver(
                topology(c.get("how").asText()), config(stateDir), Instant.ofEpochMilli(0))) {
            final TestInputTopic<String, String> tableIn = driver.createInputTopic(
                TABLE, new StringSerializer(), new StringSerializer());
            final TestInputTopic<String, String> streamIn = driver.createInputTopic(
                STREAM, new StringSerializer(), new StringSerializer());
            final TestOutputTopic<String, String> out = driver.createOutputTopic(
                OUT, new StringDeserializer(), new StringDeserializer());
            int index = 0;
            try {
                for (final JsonNode r : c.get("records")) {
                    final String key = r.get("key").isNull() ? null : r.get("key").asText();
                    final String value = r.get("value").isNull() ? null : r.get("value").asText();
                    final TestInputTopic<String, String> in =
                        r.get("side").asText().equals(TABLE) ? tableIn : streamIn;
                    in.pipeInput(key, value, r.get("ts").asLong());
                    for (final TestRecord<String, String> o : out.readRecordsToList()) {
                        final Map<String, Object> record = new LinkedHashMap<>();
                        record.put("input", index);
                        record.put("key", o.key());
                        record.put("value", o.value());
                        record.put("ts", o.timestamp());
                        outputs.add(record);
                    }
                    index++;
                }
            } catch (final RuntimeException e) {
                error = "record " + index + ": " + e;
            }
            final KeyValueStore<String, String> store = driver.getKeyValueStore(STORE);
            try (KeyValueIterator<String, String> all = store.all()) {
                all.forEachRemaining(kv -> table.add(List.of(kv.key, kv.value)));
            }
        }
        result.put("outputs", outputs);
        result.put("table", table);
        result.put("error", error);
        return result;
    }

    private static Properties config(final Path stateDir) {
        final Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "global-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(final String how) {
        final StreamsBuilder builder = new StreamsBuilder();
        final GlobalKTable<String, String> global = builder.globalTable(
            TABLE,
            Consumed.with(Serdes.String(), Serdes.String()),
            org.apache.kafka.streams.kstream.Materialized.as(STORE));
        final KStream<String, String> stream = builder
            .stream(STREAM, Consumed.with(Serdes.String(), Serdes.String()));
        final KeyValueMapper<String, String, String> mapper = GlobalJoinOracle::lookup;
        final ValueJoiner<String, String, String> joiner = (v, row) -> v + "+" + row;
        final KStream<String, String> joined = switch (how) {
            case "inner" -> stream.join(global, mapper, joiner);
            case "left" -> stream.leftJoin(global, mapper, joiner);
            default -> throw new IllegalArgumentException("how: " + how);
        };
        joined.to(OUT, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    private static void deleteTree(final Path root) throws java.io.IOException {
        try (Stream<Path> paths = Files.walk(root)) {
            for (final Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
