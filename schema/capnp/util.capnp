@0xcbbd6e810a1e34b9;
# Small interfaces shared by the other schemas.


interface Handle {
  # An arbitrary held resource: it lasts as long as some client holds a reference. Dropping the
  # last reference releases it (a wake lock ends, a log watch stops, a subscription is cancelled).
}

interface ByteStream {
  # A flow-controlled stream of bytes. The sender awaits each `write`; at most a bounded window
  # of writes is outstanding, so a slow reader slows the writer instead of filling memory.

  write @0 (data :Data) -> stream;
  # Append bytes. Each call carries at most 64 KiB.

  done @1 ();
  # The stream ended normally. Dropping the stream without `done` means it was cut short.

  expectSize @2 (size :UInt64);
  # Optional hint of the total number of bytes, sent before the first `write`.
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}
