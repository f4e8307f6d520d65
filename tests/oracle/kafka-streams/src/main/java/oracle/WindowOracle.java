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
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindowedKStream;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindowedKStream;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs windowed aggregations through Kafka Streams' own TopologyTestDriver, one driver per case,
 * all cases in one JVM.
 *
 * <pre>
 * java -cp ... oracle.WindowOracle CASES.json RESULTS.json [STATE_PARENT]
 * </pre>
 *
 * The drivers keep their (RocksDB) state under a new directory in STATE_PARENT (default: the
 * system's temporary directory), deleted at the end. Each record commits, and each commit
 * fsyncs checkpoint files: a directory in memory (/dev/shm) makes that cheap.
 *
 * CASES.json: {"cases": [case, ...]}, a case being
 * <pre>
 * {"id": "t1", "kind": "tumbling" | "hopping" | "sliding" | "session",
 *  "size_ms": 10, "advance_ms": 5,          (tumbling: size; hopping: size and advance)
 *  "max_difference_ms": 10,                 (sliding)
 *  "gap_ms": 10,                            (session)
 *  "grace_ms": 0, "emit": "update" | "final", "agg": "count" | "sum",
 *  "final_mechanism": "emit_strategy" | "suppress",   (optional; default emit_strategy)
 *  "table_filter_min": 3,   (optional; the windowed table filtered to aggregates >= 3)
 *  "retention_ms": 1000000,     (optional; the store's retention, default Kafka Streams')
 *  "skip_null_values": false,   (optional; true filters null values out before grouping, so
 *                                they neither reach the aggregation nor move its stream time)
 *  "records": [{"key": "a", "value": 1 | null, "ts": 0}, ...]}
 * </pre>
 * "update" is EmitStrategy.onWindowUpdate() with record caches off, so every update is forwarded;
 * "final" is EmitStrategy.onWindowClose() (with its wall-clock throttle off), or
 * suppress(untilWindowCloses(unbounded())) when final_mechanism is "suppress".
 *
 * RESULTS.json: {"results": [{"id", "outputs": [{"input": index of the record piped just
 * before, "key", "start_ms", "end_ms", "value": int | null, "ts"}, ...], "dropped_records":
 * Kafka Streams' dropped-records-total, "aggregator_nulls": how often the aggregator was given a
 * null value, "error": null | "what was thrown"}]}.
 */
public final class WindowOracle {
    private static final String IN = "in";
    private static final String OUT = "out";
    /** Separates the parts of a windowed key on the output topic; keys must not contain it. */
    private static final String SEP = "\u0000";

    private WindowOracle() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: WindowOracle CASES.json RESULTS.json [STATE_PARENT]");
            System.exit(2);
        }
        final ObjectMapper json = new ObjectMapper();
        final JsonNode cases = json.readTree(new File(args[0])).get("cases");
        final Path stateRoot = args.length == 3
            ? Files.createTempDirectory(Path.of(args[2]), "window-oracle-")
            : Files.createTempDirectory("window-oracle-");
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
        final AtomicLong aggregatorNulls = new AtomicLong();
        final List<Map<String, Object>> outputs = new ArrayList<>();
        String error = null;
        try (TopologyTestDriver driver = new TopologyTestDriver(
                topology(c, aggregatorNulls), config(stateDir), Instant.ofEpochMilli(0))) {
            final TestInputTopic<String, Long> in = driver.createInputTopic(
                IN, new StringSerializer(), new LongSerializer());
            final TestOutputTopic<String, Long> out = driver.createOutputTopic(
                OUT, new StringDeserializer(), new LongDeserializer());
            int index = 0;
            try {
                for (final JsonNode r : c.get("records")) {
                    final String key = r.get("key").isNull() ? null : r.get("key").asText();
                    final Long value = r.get("value").isNull() ? null : r.get("value").asLong();
                    in.pipeInput(key, value, r.get("ts").asLong());
                    for (final TestRecord<String, Long> o : out.readRecordsToList()) {
                        outputs.add(output(index, o));
                    }
                    index++;
                }
            } catch (final RuntimeException e) {
                error = "record " + index + ": " + e;
            }
            result.put("dropped_records", droppedRecords(driver));
        }
        result.put("outputs", outputs);
        result.put("aggregator_nulls", aggregatorNulls.get());
        result.put("error", error);
        return result;
    }

    private static Properties config(final Path stateDir) {
        final Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "window-oracle");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // Every update reaches the output: no record cache.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // onWindowClose() emits at most once per this much wall-clock time (default 1 s); the
        // driver's wall clock stands still, so without this only the first close would emit.
        props.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION, 0L);
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(
            final JsonNode c, final AtomicLong aggregatorNulls) {
        final StreamsBuilder builder = new StreamsBuilder();
        final KStream<String, Long> input = builder
            .stream(IN, Consumed.with(Serdes.String(), Serdes.Long()));
        final boolean skipNulls = c.has("skip_null_values") && c.get("skip_null_values").asBoolean();
        final KGroupedStream<String, Long> grouped =
            (skipNulls ? input.filter((k, v) -> v != null) : input).groupByKey();
        final String kind = c.get("kind").asText();
        final Duration grace = Duration.ofMillis(c.get("grace_ms").asLong());
        final boolean emitFinal = switch (c.get("emit").asText()) {
            case "update" -> false;
            case "final" -> true;
            default -> throw new IllegalArgumentException("emit: " + c.get("emit"));
        };
        final boolean suppress = emitFinal && c.has("final_mechanism")
            && c.get("final_mechanism").asText().equals("suppress");
        final EmitStrategy strategy = emitFinal && !suppress
            ? EmitStrategy.onWindowClose() : EmitStrategy.onWindowUpdate();
        final boolean sum = switch (c.get("agg").asText()) {
            case "count" -> false;
            case "sum" -> true;
            default -> throw new IllegalArgumentException("agg: " + c.get("agg"));
        };
        final KTable<Windowed<String>, Long> table;
        if (kind.equals("session")) {
            final SessionWindowedKStream<String, Long> windowed = grouped
                .windowedBy(SessionWindows.ofInactivityGapAndGrace(
                    Duration.ofMillis(c.get("gap_ms").asLong()), grace))
                .emitStrategy(strategy);
            table = sum
                ? windowed.aggregate(
                    () -> 0L,
                    (k, v, a) -> add(a, v, aggregatorNulls),
                    (k, a, b) -> a + b,
                    materialized(c))
                : windowed.count(materialized(c));
        } else {
            final TimeWindowedKStream<String, Long> byWindow = switch (kind) {
                case "tumbling" -> grouped.windowedBy(
                    TimeWindows.ofSizeAndGrace(Duration.ofMillis(c.get("size_ms").asLong()), grace));
                case "hopping" -> grouped.windowedBy(
                    TimeWindows.ofSizeAndGrace(Duration.ofMillis(c.get("size_ms").asLong()), grace)
                        .advanceBy(Duration.ofMillis(c.get("advance_ms").asLong())));
                case "sliding" -> grouped.windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(
                    Duration.ofMillis(c.get("max_difference_ms").asLong()), grace));
                default -> throw new IllegalArgumentException("kind: " + kind);
            };
            final TimeWindowedKStream<String, Long> windowed = byWindow.emitStrategy(strategy);
            table = sum
                ? windowed.aggregate(
                    () -> 0L,
                    (k, v, a) -> add(a, v, aggregatorNulls),
                    materialized(c))
                : windowed.count(materialized(c));
        }
        final KTable<Windowed<String>, Long> emitted = suppress
            ? table.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
            : table;
        final boolean filtered = c.has("table_filter_min") && !c.get("table_filter_min").isNull();
        final long filterMin = filtered ? c.get("table_filter_min").asLong() : 0L;
        (filtered ? emitted.filter((w, v) -> v >= filterMin) : emitted).toStream()
            .map((w, v) -> KeyValue.pair(
                w.key() + SEP + w.window().start() + SEP + w.window().end(), v))
            .to(OUT, Produced.with(Serdes.String(), Serdes.Long()));
        return builder.build();
    }

    private static <S extends org.apache.kafka.streams.processor.StateStore>
            Materialized<String, Long, S> materialized(final JsonNode c) {
        final Materialized<String, Long, S> m = Materialized.with(Serdes.String(), Serdes.Long());
        return c.has("retention_ms") && !c.get("retention_ms").isNull()
            ? m.withRetention(Duration.ofMillis(c.get("retention_ms").asLong()))
            : m;
    }

    /** The sum aggregator: a null value (if Kafka Streams passes one) adds nothing. */
    private static Long add(final Long aggregate, final Long value, final AtomicLong nulls) {
        if (value == null) {
            nulls.incrementAndGet();
            return aggregate;
        }
        return aggregate + value;
    }

    private static Map<String, Object> output(final int input, final TestRecord<String, Long> o) {
        final String[] parts = o.key().split(SEP, -1);
        final Map<String, Object> record = new LinkedHashMap<>();
        record.put("input", input);
        record.put("key", parts[0]);
        record.put("start_ms", Long.parseLong(parts[1]));
        record.put("end_ms", Long.parseLong(parts[2]));
        record.put("value", o.value());
        record.put("ts", o.timestamp());
        return record;
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
