@0xff38c5fdd284bf2e;
# What the server calls on one grain's supervisor, and what the supervisor calls back.
# Transport: a unix socket in the grain's directory, reachable only by the server.


using Util = import "util.capnp";
using Grain = import "grain.capnp";

interface Supervisor {
  getMainView @0 () -> (view :Grain.MainView);
  # Start the app if it is not running and return its main view, wrapped in the supervisor's
  # membrane (every inbound call counts as activity for idle shutdown). Fails with `overloaded`
  # during crash-loop back-off (the message says when to retry). A view from an earlier run of
  # the app fails with `disconnected` once that run ended: call getMainView again.

  keepAlive @1 (core :GrainCore);
  # The server is still using this grain; also refreshes the supervisor's link to the server.

  shutdown @2 ();
  # Stop the app and the supervisor (used for restart, update, delete). Returns once the app
  # has stopped; the supervisor exits right after, so a disconnect also means success.

  watchLog @3 (backlogBytes :UInt64, sink :Util.ByteStream) -> (handle :Util.Handle);
  # Send up to the last `backlogBytes` of the grain log, then new output as it is written,
  # until the handle is dropped.

  storageUsage @4 () -> (bytes :UInt64);
  # Bytes allocated by the grain's /var.

  status @5 () -> (state :AppState);
}

struct AppState {
  union {
    notStarted @0 :Void;
    running @1 :UInt32;
    # The app's pid as seen by the supervisor.
    exited @2 :ExitInfo;
    starting @3 :Void;
    # getMainView asked for the app and its sandbox is being set up.
  }
  struct ExitInfo {
    code @0 :Int32;
    # Exit status, or -1 when killed by a signal. (The sandbox reports a signal as 128 + its
    # number, like a shell, so an app that exits with a status above 128 reads as killed.)
    signal @1 :Int32;
    # The signal that killed the app, or 0.
  }
}

interface GrainCore {
  # The server's per-grain object, handed to the supervisor. Everything here is scoped to the
  # one grain the supervisor runs; a supervisor cannot name another grain.

  save @0 (cap :Capability, label :Text) -> (token :Data);
  restore @1 (token :Data) -> (cap :Capability);
  drop @2 (token :Data);
  reportStorage @3 (bytes :UInt64);
  appExited @4 (info :AppState.ExitInfo);
  wakeLock @5 (reason :Text) -> (handle :Util.Handle);
}
