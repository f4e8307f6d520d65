package bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * The Kafka Streams contender of bench/compare.py.
 *
 * <p>Arguments: BOOTSTRAP INPUT OUTPUT APP_ID WORKLOAD GUARANTEE STATE_DIR [STANDBYS
 * [KEY=VALUE...]], where
 * WORKLOAD is "stateless" (keep values not divisible by 4, double them), "count" (count per
 * key in a RocksDB store with a changelog, every update to OUTPUT as an 8-byte long) or
 * "count-window" (count per key in tumbling windows of WINDOW_SIZE_MS by the records'
 * timestamps, in its RocksDB window store with a changelog, emitted on update (its default; the
 * record cache coalesces a window's updates between commits), each to OUTPUT under the key "KEY@WINDOW_START" as an 8-byte long) or
 * "join" (INPUT, JSON orders, left-joined with the KTable of the topic in the system property
 * bench.table, JSON customers: each order written to OUTPUT with its customer's value under
 * "customer", or null) and
 * GUARANTEE is at_least_once or exactly_once. One stream thread per process; commit interval
 * 1 s under both guarantees, as for the other contenders. Each KEY=VALUE after STANDBYS is put
 * into the Streams properties last, so it overrides the settings above (the failover workload
 * sets the session timeout, commit interval and cache size this way). Restores are printed to
 * stdout.
 */
public final class StreamsBench {
    /** The count-window workload's windows: WINDOW_SIZE_MS, WINDOW_GRACE_MS of bench/contenders. */
    private static final Duration WINDOW_SIZE = Duration.ofMillis(60_000);
    private static final Duration WINDOW_GRACE = Duration.ofMillis(0);
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The join workload's joiner: the order (a JSON object) with "customer" set to the customer
     * (JSON) or null, as the Python contenders' `{**order, "customer": customer}`. */
    static String enrich(String order, String customer) {
        try {
            ObjectNode joined = (ObjectNode) JSON.readTree(order);
            joined.set("customer", customer == null ? NullNode.getInstance() : JSON.readTree(customer));
            return JSON.writeValueAsString(joined);
        } catch (java.io.IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 7) {
            System.err.println(
                    "usage: BOOTSTRAP INPUT OUTPUT APP_ID stateless|count|count-window|join GUARANTEE"
                            + " STATE_DIR"
                            + " [STANDBYS [KEY=VALUE...]]");
            System.exit(2);
        }
        String input = args[1];
        String output = args[2];
        String workload = args[4];

        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        props.put(
                StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                args[5].equals("exactly_once")
                        ? StreamsConfig.EXACTLY_ONCE_V2
                        : StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[6]);
        props.put(StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG, args.length > 7 ? args[7] : "0");
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        for (int i = 8; i < args.length; i++) {
            int equals = args[i].indexOf('=');
            if (equals <= 0) {
                System.err.println("not KEY=VALUE: " + args[i]);
                System.exit(2);
            }
            props.put(args[i].substring(0, equals), args[i].substring(equals + 1));
        }

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> source =
                builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));
        if (workload.equals("join")) {
            KTable<String, String> customers = builder.table(
                    System.getProperty("bench.table"), Consumed.with(Serdes.String(), Serdes.String()));
            source.leftJoin(customers, StreamsBench::enrich)
                    .to(output, Produced.with(Serdes.String(), Serdes.String()));
        } else if (workload.equals("stateless")) {
            source.filter((key, value) -> Long.parseLong(value) % 4 != 0)
                    .mapValues(value -> Long.toString(Long.parseLong(value) * 2))
                    .to(output, Produced.with(Serdes.String(), Serdes.String()));
        } else if (workload.equals("count")) {
            source.groupByKey()
                    .count(Materialized.as("counts"))
                    .toStream()
                    .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        } else if (workload.equals("count-window")) {
            source.groupByKey()
                    .windowedBy(TimeWindows.ofSizeAndGrace(WINDOW_SIZE, WINDOW_GRACE))
                    .count(Materialized.as("window-counts"))
                    .toStream()
                    .map((window, count) -> KeyValue.pair(
                            window.key() + "@" + window.window().start(), count))
                    .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        } else {
            System.err.println("unknown workload " + workload);
            System.exit(2);
        }

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        int[] exitCode = {0};
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition partition, String store, long start, long end) {
                System.out.printf("restore start %s %d records%n", partition, end - start);
            }

            @Override
            public void onBatchRestored(
                    TopicPartition partition, String store, long batchEnd, long records) {}

            @Override
            public void onRestoreEnd(TopicPartition partition, String store, long records) {
                System.out.printf("restore end %s %d records%n", partition, records);
            }
        });
        streams.setStateListener((now, before) -> {
            System.out.printf("state %s -> %s%n", before, now);
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(exception -> {
            exception.printStackTrace();
            exitCode[0] = 1;
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(30))));
        streams.start();
        stopped.await();
        System.exit(exitCode[0]);
    }
}
