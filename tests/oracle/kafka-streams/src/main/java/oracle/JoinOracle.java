package oracle;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Stream;

import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs stream-stream joins through Kafka Streams' own TopologyTestDriver, one driver per case,
 * all cases in one JVM.
 *
 * <pre>
 * java -cp ... oracle.JoinOracle CASES.json RESULTS.json [STATE_PARENT]
 * </pre>
 *
 * CASES.json: {"cases": [case, ...]}, a case being
 * <pre>
 * {"id": "j1", "how": "inner" | "left" | "outer", "before_ms": 10, "after_ms": 5,
 *  "grace_ms": 0, "self_join": false,
 *  "records": [{"side": "left" | "right", "key": "a" | null, "value": 1 | null, "ts": 0}, ...]}
 * </pre>
 * Topics "left" and "right" (String keys, Long values) are joined with JoinWindows
 * ofTimeDifferenceAndGrace(before, grace).before(before).after(after); with self_join the left
 * stream is joined with itself (every record goes to "left"). The joiner writes "L|R", each side
 * its value or "null". Record caches are off, and the outer join's wall-clock throttle of
 * unmatched records is off (the driver's wall clock stands still).
 *
 * RESULTS.json: {"results": [{"id", "outputs": [{"input": index of the record piped just before,
 * "key", "value": "L|R", "ts"}, ...], "dropped_records": Kafka Streams' dropped-records-total,
 * "error": null | "what was thrown"}]}.
 */
public final class JoinOracle {
    private static final String LEFT = "left";
    private static final String RIGHT = "right";
    private static final String OUT = "out";

    private JoinOracle() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: JoinOracle CASES.json RESULTS.json [STATE_PARENT]");
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
        final boolean selfJoin = c.has("self_join") && c.get("self_join").asBoolean();
        try (TopologyTestDriver driver = new TopologyTestDriver(
                topology(c, selfJoin), config(stateDir), Instant.ofEpochMilli(0))) {
            final TestInputTopic<String, Long> left = driver.createInputTopic(
                LEFT, new StringSerializer(), new LongSerializer());
            final TestInputTopic<String, Long> right = selfJoin ? left : driver.createInputTopic(
                RIGHT, new StringSerializer(), new LongSerializer());
            final TestOutputTopic<String, String> out = driver.createOutputTopic(
                OUT, new StringDeserializer(), new StringDeserializer());
            int index = 0;
            try {
                for (final JsonNode r : c.get("records")) {
                    final String key = r.get("key").isNull() ? null : r.get("key").asText();
                    final Long value = r.get("value").isNull() ? null : r.get("value").asLong();
                    final TestInputTopic<String, Long> in =
                        r.get("side").asText().equals(LEFT) ? left : right;
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
            result.put("dropped_records", droppedRecords(driver));
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
        // Unmatched records are emitted at most once per this much wall-clock time (default
        // 1 s); the driver's wall clock stands still.
        props.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_OUTER_JOIN_SPURIOUS_RESULTS_FIX, 0L);
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(
            final JsonNode c, final boolean selfJoin) {
        final StreamsBuilder builder = new StreamsBuilder();
        final KStream<String, Long> left = builder
            .stream(LEFT, Consumed.with(Serdes.String(), Serdes.Long()));
        final KStream<String, Long> right = selfJoin
            ? left : builder.stream(RIGHT, Consumed.with(Serdes.String(), Serdes.Long()));
        final long before = c.get("before_ms").asLong();
        final long after = c.get("after_ms").asLong();
        final JoinWindows windows = JoinWindows
            .ofTimeDifferenceAndGrace(Duration.ofMillis(Math.max(before, after)),
                Duration.ofMillis(c.get("grace_ms").asLong()))
            .before(Duration.ofMillis(before))
            .after(Duration.ofMillis(after));
        final ValueJoiner<Long, Long, String> joiner = (l, r) -> l + "|" + r;
        final StreamJoined<String, Long, Long> serdes =
            StreamJoined.with(Serdes.String(), Serdes.Long(), Serdes.Long());
        final KStream<String, String> joined = switch (c.get("how").asText()) {
            case "inner" -> left.join(right, joiner, windows, serdes);
            case "left" -> left.leftJoin(right, joiner, windows, serdes);
            case "outer" -> left.outerJoin(right, joiner, windows, serdes);
            default -> throw new IllegalArgumentException("how: " + c.get("how"));
        };
        joined.to(OUT, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    private static double droppedRecords(final TopologyTestDriver driver) {
        double dropped = 0;
        for (final Map.Entry<MetricName, ? extends Metric> m : driver.metrics().entrySet()) {
            if (m.getKey().name().equals("dropped-records-total")) {
                dropped += ((Number) m.getValue().metricValue()).doubleValue();
            }
        }
        return dropped;
    }

    private static void deleteTree(final Path root) throws java.io.IOException {
        try (Stream<Path> paths = Files.walk(root)) {
            for (final Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
