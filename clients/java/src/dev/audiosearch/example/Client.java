package dev.audiosearch.example;

import com.google.protobuf.Any;
import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import dev.audiosearch.v1.AudioSearchServiceGrpc;
import dev.audiosearch.v1.CreateCollectionRequest;
import dev.audiosearch.v1.DetectionState;
import dev.audiosearch.v1.ErrorReason;
import dev.audiosearch.v1.GetAudioRequest;
import dev.audiosearch.v1.IngestAudioHeader;
import dev.audiosearch.v1.IngestAudioRequest;
import dev.audiosearch.v1.IngestAudioResponse;
import dev.audiosearch.v1.Match;
import dev.audiosearch.v1.MonitorAudioHeader;
import dev.audiosearch.v1.MonitorAudioRequest;
import dev.audiosearch.v1.MonitorAudioResponse;
import dev.audiosearch.v1.MonitorDetection;
import dev.audiosearch.v1.MonitorProgress;
import dev.audiosearch.v1.SearchAudioRequest;
import dev.audiosearch.v1.SearchAudioResponse;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A minimal Java client of audiosearch.v1.AudioSearchService.
 *
 * <p>It creates a collection (an existing one is fine), ingests one file with the client-streaming
 * IngestAudio (header, then 64 KiB chunks), searches the collection with the same file and prints one
 * JSON line: {"audio_id": ..., "top_match_id": ..., "top_name": ..., "top_score": ..., "already_existed": ...}.
 * Then it asks GetAudio for an id that does not exist and prints the google.rpc.ErrorInfo reason it got
 * as {"error_reason": "AUDIO_NOT_FOUND"}: callers branch on ErrorInfo.reason, never on the message.
 * Any unexpected error exits non-zero.
 *
 * <p>The monitor command streams a feed (a file, or - for stdin) through the bidirectional MonitorAudio and
 * prints each detection as a JSON line as it arrives, progress on stderr and a summary line at the end.
 *
 * <p>Usage: Client --gateway host:port --collection NAME --file PATH [--timeout-seconds N]
 * <br>Client monitor --gateway host:port --collection NAME [--label TEXT] [--timeout-seconds N] FILE|-
 */
public final class Client {
  private static final String ERROR_DOMAIN = "audiosearch.dev";
  private static final int CHUNK_SIZE = 64 * 1024;

  private final AudioSearchServiceGrpc.AudioSearchServiceBlockingStub blocking;
  private final AudioSearchServiceGrpc.AudioSearchServiceStub async;

  /** A timeoutSeconds of 0 or less sets no deadline. */
  private Client(ManagedChannel channel, long timeoutSeconds) {
    AudioSearchServiceGrpc.AudioSearchServiceBlockingStub blocking = AudioSearchServiceGrpc.newBlockingStub(channel);
    AudioSearchServiceGrpc.AudioSearchServiceStub async = AudioSearchServiceGrpc.newStub(channel);
    if (timeoutSeconds > 0) {
      blocking = blocking.withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS);
      async = async.withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS);
    }
    this.blocking = blocking;
    this.async = async;
  }

  /** The google.rpc.ErrorInfo an audiosearch error carries, if any. */
  static Optional<ErrorInfo> errorInfo(Throwable error) {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status == null) {
      return Optional.empty();
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        try {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          if (ERROR_DOMAIN.equals(info.getDomain())) {
            return Optional.of(info);
          }
        } catch (InvalidProtocolBufferException e) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }

  /** The ErrorInfo reason of an error ("" when it carries none). */
  static String reason(Throwable error) {
    return errorInfo(error).map(ErrorInfo::getReason).orElse("");
  }

  /** The ErrorInfo.reason string of an ErrorReason value: its name without the prefix. */
  static String reasonName(ErrorReason reason) {
    return reason.name().substring("ERROR_REASON_".length());
  }

  private static IllegalStateException describe(String what, Throwable error) {
    io.grpc.Status status = io.grpc.Status.fromThrowable(error);
    return new IllegalStateException(String.format("%s: code=%s reason=\"%s\" message=\"%s\"",
        what, status.getCode(), reason(error), status.getDescription()), error);
  }

  /** Creates the collection; returns true when it existed already. */
  boolean ensureCollection(String name) {
    try {
      blocking.createCollection(CreateCollectionRequest.newBuilder()
          .setName(name)
          .setDescription("created by the audiosearch Java example client")
          .build());
      return false;
    } catch (StatusRuntimeException e) {
      if (reason(e).equals(reasonName(ErrorReason.ERROR_REASON_COLLECTION_EXISTS))) {
        return true;
      }
      throw describe("CreateCollection", e);
    }
  }

  /** Streams the file: the header first, then 64 KiB chunks. */
  IngestAudioResponse ingest(String collection, Path file) throws IOException, InterruptedException {
    CompletableFuture<IngestAudioResponse> result = new CompletableFuture<>();
    StreamObserver<IngestAudioRequest> requests = async.ingestAudio(new StreamObserver<IngestAudioResponse>() {
      @Override
      public void onNext(IngestAudioResponse response) {
        result.complete(response);
      }

      @Override
      public void onError(Throwable error) {
        result.completeExceptionally(error);
      }

      @Override
      public void onCompleted() {
        if (!result.isDone()) {
          result.completeExceptionally(new IllegalStateException("IngestAudio ended without a response"));
        }
      }
    });
    try (InputStream input = Files.newInputStream(file)) {
      requests.onNext(IngestAudioRequest.newBuilder()
          .setHeader(IngestAudioHeader.newBuilder()
              .setCollection(collection)
              .setName(file.getFileName().toString())
              .putMetadata("client", "java"))
          .build());
      byte[] buffer = new byte[CHUNK_SIZE];
      int read;
      // Stop sending once the server has ended the call (e.g. with an error); its status wins.
      while (!result.isDone() && (read = input.readNBytes(buffer, 0, CHUNK_SIZE)) > 0) {
        requests.onNext(IngestAudioRequest.newBuilder().setChunk(ByteString.copyFrom(buffer, 0, read)).build());
      }
      requests.onCompleted();
    } catch (IOException | RuntimeException e) {
      requests.onError(e);
      throw e;
    }
    try {
      return result.get();
    } catch (ExecutionException e) {
      throw describe("IngestAudio", e.getCause());
    }
  }

  /** An id shaped like a real one (same length and separators) that cannot exist. */
  static String unknownId(String realId) {
    char filler = realId.replace("0", "").replace("-", "").isEmpty() ? '1' : '0';
    StringBuilder id = new StringBuilder(realId.length());
    for (char c : realId.toCharArray()) {
      id.append(c == '-' || c == '_' ? c : filler);
    }
    return id.toString();
  }

  /** A JSON value: strings quoted and escaped, null as null, numbers and booleans as they print. */
  static String json(Object value) {
    if (value == null) {
      return "null";
    }
    if (value instanceof Number || value instanceof Boolean) {
      return value.toString();
    }
    if (value instanceof List<?> list) {
      StringBuilder out = new StringBuilder("[");
      for (Object item : list) {
        out.append(out.length() > 1 ? ", " : "").append(json(item));
      }
      return out.append(']').toString();
    }
    StringBuilder out = new StringBuilder("\"");
    for (char c : value.toString().toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.append('"').toString();
  }

  static String jsonObject(Map<String, Object> fields) {
    StringBuilder out = new StringBuilder("{");
    for (Map.Entry<String, Object> field : fields.entrySet()) {
      if (out.length() > 1) {
        out.append(", ");
      }
      out.append(json(field.getKey())).append(": ").append(json(field.getValue()));
    }
    return out.append('}').toString();
  }

  /** The JSON line of a detection: a play's "started", then its "ended" with the final ranges. */
  static Map<String, Object> detectionFields(MonitorDetection detection) {
    Map<String, Object> fields = new LinkedHashMap<>();
    fields.put("event", detection.getState().name().substring("DETECTION_STATE_".length()).toLowerCase(Locale.ROOT));
    fields.put("detection_id", detection.getDetectionId());
    fields.put("id", detection.getAudio().getId());
    fields.put("name", detection.getAudio().getName());
    fields.put("feed_label", detection.getFeedLabel());
    // Seconds from the feed's start, and of the recording played.
    fields.put("feed_range",
        List.of(detection.getFeedRange().getStartSeconds(), detection.getFeedRange().getEndSeconds()));
    fields.put("reference_range",
        List.of(detection.getReferenceRange().getStartSeconds(), detection.getReferenceRange().getEndSeconds()));
    fields.put("score", detection.getScore());
    fields.put("landmarks", detection.getLandmarks());
    fields.put("landmark_share", detection.getLandmarkShare());
    fields.put("decided_by", detection.getDecidedBy().name());
    return fields;
  }

  static String progressLine(MonitorProgress progress) {
    return String.format(Locale.ROOT, "progress: analysed %.1f s of feed, %.2fx real time, lag %.1f s, %d playing",
        progress.getAudioSeconds(), progress.getRealTimeFactor(), progress.getLagSeconds(),
        progress.getOpenDetections());
  }

  /**
   * The monitor command: streams the file (or stdin for "-") through the bidirectional MonitorAudio as the bytes it
   * holds, a container the gateway decodes with ffmpeg (wav, mp3, ogg, flac, AAC/ADTS): the header, then 64 KiB
   * chunks as they become readable, sent only while the call is ready for more (memory stays bounded whatever the
   * feed's length), then a half-close. Prints a JSON line per detection as it arrives, progress on stderr, and a
   * summary line once the server completes the call.
   */
  int monitor(String collection, String source, String label) throws IOException, InterruptedException {
    boolean fromStdin = source.equals("-");
    String feedLabel = !label.isEmpty() ? label : fromStdin ? "stdin" : Path.of(source).getFileName().toString();
    AtomicInteger started = new AtomicInteger();
    AtomicInteger ended = new AtomicInteger();
    AtomicReference<MonitorProgress> lastProgress = new AtomicReference<>(MonitorProgress.getDefaultInstance());
    AtomicReference<ClientCallStreamObserver<MonitorAudioRequest>> call = new AtomicReference<>();
    CompletableFuture<Void> done = new CompletableFuture<>();
    Object ready = new Object();
    Runnable wake = () -> {
      synchronized (ready) {
        ready.notifyAll();
      }
    };
    long start = System.nanoTime();
    try (InputStream input = fromStdin ? System.in : Files.newInputStream(Path.of(source))) {
      StreamObserver<MonitorAudioRequest> requests = async.monitorAudio(
          new ClientResponseObserver<MonitorAudioRequest, MonitorAudioResponse>() {
            @Override
            public void beforeStart(ClientCallStreamObserver<MonitorAudioRequest> requestStream) {
              call.set(requestStream);
              requestStream.setOnReadyHandler(wake);
            }

            @Override
            public void onNext(MonitorAudioResponse response) {
              switch (response.getEventCase()) {
                case PROGRESS -> {
                  lastProgress.set(response.getProgress());
                  System.err.println(progressLine(response.getProgress()));
                }
                case DETECTION -> {
                  MonitorDetection detection = response.getDetection();
                  if (detection.getState() == DetectionState.DETECTION_STATE_STARTED) {
                    started.incrementAndGet();
                  } else if (detection.getState() == DetectionState.DETECTION_STATE_ENDED) {
                    ended.incrementAndGet();
                  }
                  System.out.println(jsonObject(detectionFields(detection)));
                  System.out.flush();
                }
                default -> { }
              }
            }

            @Override
            public void onError(Throwable error) {
              done.completeExceptionally(error);
              wake.run();
            }

            @Override
            public void onCompleted() {
              done.complete(null);
              wake.run();
            }
          });
      try {
        requests.onNext(MonitorAudioRequest.newBuilder()
            .setHeader(MonitorAudioHeader.newBuilder().setCollection(collection).setFeedLabel(feedLabel))
            .build());
        byte[] buffer = new byte[CHUNK_SIZE];
        int read;
        // Stop sending once the server has ended the call (e.g. with an error); its status wins.
        while (!done.isDone() && (read = input.read(buffer)) >= 0) {
          synchronized (ready) {
            while (!call.get().isReady() && !done.isDone()) {
              ready.wait(1000);
            }
          }
          if (read > 0 && !done.isDone()) {
            requests.onNext(MonitorAudioRequest.newBuilder().setChunk(ByteString.copyFrom(buffer, 0, read)).build());
          }
        }
        if (!done.isDone()) {
          requests.onCompleted();
        }
      } catch (IOException | RuntimeException | InterruptedException e) {
        requests.onError(e);
        throw e;
      }
    }
    try {
      done.get();
    } catch (ExecutionException e) {
      throw describe("MonitorAudio", e.getCause());
    }
    Map<String, Object> summary = new LinkedHashMap<>();
    summary.put("event", "summary");
    summary.put("started", started.get());
    summary.put("ended", ended.get());
    summary.put("audio_seconds", lastProgress.get().getAudioSeconds());
    summary.put("elapsed_seconds", (System.nanoTime() - start) / 1e9);
    summary.put("real_time_factor", lastProgress.get().getRealTimeFactor());
    System.out.println(jsonObject(summary));
    System.out.flush();
    return 0;
  }

  int run(String collection, Path file) throws IOException, InterruptedException {
    byte[] content = Files.readAllBytes(file);
    boolean collectionExisted = ensureCollection(collection);
    IngestAudioResponse ingested = ingest(collection, file);
    SearchAudioResponse found;
    try {
      found = blocking.searchAudio(SearchAudioRequest.newBuilder()
          .setCollection(collection)
          .setAudioContent(ByteString.copyFrom(content))
          .setTopK(5)
          .build());
    } catch (StatusRuntimeException e) {
      throw describe("SearchAudio", e);
    }
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("audio_id", ingested.getAudio().getId());
    result.put("top_match_id", null);
    result.put("top_name", null);
    result.put("top_score", null);
    // Which evidence made the top result a match: MATCH_EVIDENCE_EMBEDDING, _LANDMARKS or _BOTH.
    result.put("top_decided_by", null);
    result.put("already_existed", ingested.getAlreadyExisted());
    result.put("collection_existed", collectionExisted);
    // An untrained model's tags are meaningless: a client that shows tags says so when this is true.
    result.put("model_untrained", found.getModel().getUntrained());
    if (found.getMatchesCount() > 0) {
      Match top = found.getMatches(0);
      result.put("top_match_id", top.getAudio().getId());
      result.put("top_name", top.getAudio().getName());
      result.put("top_score", top.getScore());
      result.put("top_decided_by", top.getDecidedBy().name());
    }
    System.out.println(jsonObject(result));
    System.out.flush();
    if (found.getMatchesCount() == 0) {
      System.err.println("audiosearch-java-client: SearchAudio returned no match for the file just ingested");
      return 1;
    }

    try {
      blocking.getAudio(GetAudioRequest.newBuilder()
          .setCollection(collection)
          .setAudioId(unknownId(ingested.getAudio().getId()))
          .build());
      System.err.println("audiosearch-java-client: GetAudio of an unknown id succeeded");
      return 1;
    } catch (StatusRuntimeException e) {
      String reason = reason(e);
      Map<String, Object> line = new LinkedHashMap<>();
      line.put("error_reason", reason);
      System.out.println(jsonObject(line));
      System.out.flush();
      if (!reason.equals(reasonName(ErrorReason.ERROR_REASON_AUDIO_NOT_FOUND))) {
        throw describe("GetAudio of an unknown id: expected reason AUDIO_NOT_FOUND", e);
      }
    }
    return 0;
  }

  public static void main(String[] args) throws Exception {
    boolean monitor = args.length > 0 && args[0].equals("monitor");
    String usage = monitor
        ? "usage: Client monitor --gateway host:port --collection NAME [--label TEXT] [--timeout-seconds N] FILE|-"
        : "usage: Client --gateway host:port --collection NAME --file PATH [--timeout-seconds N]";
    String gateway = "127.0.0.1:50051";
    String collection = "java_client";
    String file = null;
    String label = "";
    // A monitored feed may last hours: no deadline unless asked for.
    long timeoutSeconds = monitor ? 0 : 300;
    for (int i = monitor ? 1 : 0; i < args.length; i++) {
      String arg = args[i];
      if (monitor && file == null && (arg.equals("-") || !arg.startsWith("-"))) {
        file = arg;
        continue;
      }
      String value = null;
      int eq = arg.indexOf('=');
      if (arg.startsWith("--") && eq > 0) {
        value = arg.substring(eq + 1);
        arg = arg.substring(0, eq);
      } else if (i + 1 < args.length) {
        value = args[i + 1];
      }
      switch (arg) {
        case "--gateway" -> gateway = value;
        case "--collection" -> collection = value;
        case "--file" -> file = monitor ? usageError(usage) : value;
        case "--label" -> label = monitor ? value : usageError(usage);
        case "--timeout-seconds" -> timeoutSeconds = Long.parseLong(value);
        default -> usageError(usage);
      }
      if (value == null) {
        System.err.println("audiosearch-java-client: " + arg + " needs a value");
        System.exit(2);
      }
      if (!args[i].contains("=")) {
        i++;
      }
    }
    if (file == null) {
      System.err.println(monitor ? "audiosearch-java-client: monitor takes one FILE (or - for stdin)"
          : "audiosearch-java-client: --file is required");
      System.err.println(usage);
      System.exit(2);
    }

    ManagedChannel channel = ManagedChannelBuilder.forTarget(gateway)
        .usePlaintext()
        .maxInboundMessageSize(64 * 1024 * 1024)
        .build();
    int code;
    try {
      Client client = new Client(channel, timeoutSeconds);
      code = monitor ? client.monitor(collection, file, label) : client.run(collection, Path.of(file));
    } catch (IllegalStateException e) {
      System.err.println("audiosearch-java-client: " + e.getMessage());
      code = 1;
    } catch (IOException e) {
      System.err.println("audiosearch-java-client: " + e);
      code = 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(code);
  }

  /** Prints the usage and exits 2 (typed to fit where a value is expected). */
  private static String usageError(String usage) {
    System.err.println(usage);
    System.exit(2);
    return null;
  }
}
