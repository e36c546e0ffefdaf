@0xcbeb871ab562c7f2;
# The server's control socket (`<data dir>/control.sock`, mode 0600): what local command-line
# tools ask the running server, so that they never open its database themselves. Whoever can
# connect is trusted as the machine's administrator (the socket's permissions decide).

interface Control {
  newAdminToken @0 () -> (url :Text, validSeconds :UInt32);
  # A fresh one-time URL whose page creates an admin account (the first one, or a recovery
  # admin). Earlier unused tokens stay valid until they expire.

  status @1 () -> (version :Text, users :UInt32, admins :UInt32, baseUrl :Text);
  # What the server is and how many accounts it has.
}
