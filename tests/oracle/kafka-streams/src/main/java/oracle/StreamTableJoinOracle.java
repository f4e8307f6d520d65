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
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs stream-table joins through Kafka Streams' own TopologyTestDriver, one driver per case,
 * all cases in one JVM (tests/oracle/stream_table_join.py).
 *
 * <pre>
 * java -cp ... oracle.StreamTableJoinOracle CASES.json RESULTS.json [STATE_PARENT]
 * </pre>
 *
 * CASES.json: {"cases": [case, ...]}, a case being
 * <pre>
 * {"id": "c1", "how": "inner" | "left",
 *  "rekey": false,      (true: selectKey to the same key first, so Kafka Streams repartitions)
 *  "records": [{"topic": "stream" | "table", "key": "a" | null, "value": "x" | null,
 *               "ts": 0}, ...]}
 * </pre>
 * Both topics are String/String; the joiner makes {@code stream + "+" + table} (a missing table
 * value reads "null"). Record caches are off.
 *
 * RESULTS.json: {"results": [{"id", "outputs": [{"input": index of the record piped just
 * before, "key": string | null, "value": string | null, "ts"}, ...],
 * "error": null | "what was thrown"}]}.
 */
public final class StreamTableJoinOracle {
    private static final String STREAM = "stream";
    private static final String TABLE = "table";
    private static final String OUT = "out";

    private StreamTableJoinOracle() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: StreamTableJoinOracle CASES.json RESULTS.json [STATE_PARENT]");
            System.exit(2);
        }
        final ObjectMapper json = new ObjectMapper();
        final JsonNode cases = json.readTree(new File(args[0])).get("cases");
        final Path stateRoot = args.length == 3
            ? Files.createTempDirectory(Path.of(args[2]), "join-oracle-")
            : Files.createTempDirectory("join-oracle-");
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
        try (TopologyTestDriver driver = new TopologyTestDriver(
                topology(c), config(stateDir), Instant.ofEpochMilli(0))) {
            final TestInputTopic<String, String> stream = driver.createInputTopic(
                STREAM, new StringSerializer(), new StringSerializer());
            final TestInputTopic<String, String> table = driver.createInputTopic(
                TABLE, new StringSerializer(), new StringSerializer());
            final TestOutputTopic<String, String> out = driver.createOutputTopic(
                OUT, new StringDeserializer(), new StringDeserializer());
            int index = 0;
            try {
                for (final JsonNode r : c.get("records")) {
                    final String key = r.get("key").isNull() ? null : r.get("key").asText();
                    final String value = r.get("value").isNull() ? null : r.get("value").asText();
                    final TestInputTopic<String, String> topic =
                        r.get("topic").asText().equals(TABLE) ? table : stream;
                    topic.pipeInput(key, value, r.get("ts").asLong());
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
        }
        result.put("outputs", outputs);
        result.put("error", error);
        return result;
    }

    private static Properties config(final Path stateDir) {
        final Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "join-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // The repartition topic a re-keyed stream goes through takes the default serdes.
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(final JsonNode c) {
        final StreamsBuilder builder = new StreamsBuilder();
        final KTable<String, String> table =
            builder.table(TABLE, Consumed.with(Serdes.String(), Serdes.String()));
        KStream<String, String> stream =
            builder.stream(STREAM, Consumed.with(Serdes.String(), Serdes.String()));
        if (c.has("rekey") && c.get("rekey").asBoolean()) {
            stream = stream.selectKey((k, v) -> k);
        }
        final ValueJoiner<String, String, String> joiner = (s, t) -> s + "+" + t;
        final KStream<String, String> joined = switch (c.get("how").asText()) {
            case "inner" -> stream.join(table, joiner);
            case "left" -> stream.leftJoin(table, joiner);
            default -> throw new IllegalArgumentException("how: " + c.get("how"));
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
