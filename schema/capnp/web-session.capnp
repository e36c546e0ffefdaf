@0xc332950d29bf5553;
# HTTP carried as Cap'n Proto, between the gateway and a grain. Headers pass through except
# the documented list the platform strips or sets (SPEC.md, "Header policy").


using Util = import "util.capnp";

interface WebSession {
  request @0 (request :Request, responseBody :Util.ByteStream)
      -> (requestBody :Util.ByteStream, response :Response);
  # One HTTP exchange. A streamed request body is written by the caller to `requestBody`,
  # obtained by promise pipelining before the call returns; the response body goes to
  # `responseBody` unless it fits inline. The call returns once status and headers are known.

  openWebSocket @1 (request :Request, client :WebSocketPeer) -> (server :WebSocketPeer,
                                                                 response :Response);
  # Upgrade to a WebSocket. Messages, not raw frames, cross the boundary.
}

struct Header {
  name @0 :Text;
  value @1 :Data;
  # Raw bytes: HTTP header values are not required to be UTF-8.
}

struct Request {
  method @0 :Text;
  # Any method token: GET, PROPFIND, MKCALENDAR, ...
  path @1 :Text;
  # Path and query, starting with "/".
  headers @2 :List(Header);
  body :union {
    none @3 :Void;
    inline @4 :Data;
    # Small bodies, at most 64 KiB.
    streamed @5 :UInt64;
    # The body follows on a stream; the value is its length, or 2^64-1 if unknown.
  }
}

struct Response {
  status @0 :UInt16;
  headers @1 :List(Header);
  body :union {
    none @2 :Void;
    inline @3 :Data;
    streamed @4 :UInt64;
    # The body is written to the `responseBody` stream; the value is its length or 2^64-1.
  }
}

interface WebSocketPeer {
  send @0 (message :Message) -> stream;
  close @1 (code :UInt16, reason :Text);

  struct Message {
    union {
      text @0 :Text;
      binary @1 :Data;
      ping @2 :Data;
      pong @3 :Data;
    }
  }
}
