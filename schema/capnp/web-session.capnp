@0xc332950d29bf5553;
# HTTP carried as Cap'n Proto, between the gateway (trusted, in the server) and a grain (its
# bridge or the app itself). It carries HTTP/1.1 semantics faithfully: any method, any status,
# headers as raw bytes, streamed bodies with flow control, WebSockets as messages. Headers pass
# through except the documented list the platform strips or sets (SPEC.md, "HTTP into a
# grain", header policy), and the size limits below hold in both directions: the side that
# receives checks them and never trusts the other side to have done so.
#
# Limits (SPEC.md, "Limits", gives the status each violation produces):
#   path (with query)            8 KiB
#   header count                 100
#   one header (name + value)    16 KiB
#   all headers (names + values) 64 KiB
#   inline body                  64 KiB
#   one ByteStream.write         64 KiB
#   one WebSocket message        16 MiB


using Util = import "util.capnp";

interface WebSession {
  # One session of one user with one grain, bound at `MainView.newSession` to its identity
  # (`SessionParams`): every request on it is made as that user with those permissions.

  request @0 (request :Request, responseBody :Util.ByteStream)
      -> (requestBody :Util.ByteStream, response :Response);
  # One HTTP exchange.
  #
  # Request body: with `request.body.streamed`, the callee makes `requestBody` available
  # through promise pipelining before the call returns (it calls `setPipeline` once it has
  # accepted the request, before contacting the app), so the caller writes the body to
  # `requestBody` while waiting for the response; request and response bodies may flow at the same time (full duplex). The caller
  # ends the body with `done()`; dropping `requestBody` without `done()`, or writing a number of
  # bytes different from a declared length, aborts the exchange: the app sees the request cut
  # short, never a complete one. `requestBody` is null for `none`/`inline` bodies and when the
  # callee answered without reading the body (413, 431, ...): pipelined writes then fail and
  # the caller stops sending.
  #
  # Response: the call returns as soon as status and headers are known. With
  # `response.body.streamed` the callee then writes the body to `responseBody`, awaiting each
  # write (flow control: a slow client slows the app), and calls `done()` at the end. If the
  # body cannot be completed (the app failed mid-body) the callee drops `responseBody` without
  # `done()`, and the caller must cut the HTTP response off rather than end it normally. With
  # `none` or `inline` the callee never uses `responseBody`. The caller may cancel the call or
  # drop `responseBody` to abort the exchange; the callee then stops the request to the app.
  #
  # Errors are HTTP responses, not exceptions: 400 (malformed method, path or header),
  # 414 (path too long), 431 (headers too large), 413 (body too large) are answered without
  # contacting the app; 502 if the app cannot be reached or fails before its response headers
  # are complete (or they break the limits). An exception means the caller broke this contract.
  #
  # Redirects are never followed: a 3xx goes back to the caller as is.

  openWebSocket @1 (request :Request, client :WebSocketPeer) -> (server :WebSocketPeer,
                                                                 response :Response);
  # Open a WebSocket to `request.path`. `request.method` must be GET and `request.body` none.
  # The callee performs its own handshake with the app: the caller's Upgrade, Connection and
  # Sec-WebSocket-Key/-Version/-Extensions/-Accept headers are ignored (no extension is
  # negotiated, so every message crosses whole and uncompressed); Sec-WebSocket-Protocol,
  # Origin, Cookie and the other end-to-end headers pass as for `request`.
  #
  # On success `response.status` is 101, its headers carry the app's answer (e.g. the chosen
  # Sec-WebSocket-Protocol), and `server` receives messages for the app. Messages from the app
  # are sent to `client`, in order, each awaited. Otherwise `response` is the app's refusal (or
  # the callee's 4xx/502 as for `request`, body inline and truncated to 64 KiB) and `server`
  # is null.
}

struct Header {
  name @0 :Text;
  # A header field name (an HTTP token); compared case-insensitively. Repeated names are
  # separate entries, in order (Set-Cookie is never folded).
  value @1 :Data;
  # Raw bytes: HTTP header values are not required to be UTF-8. Never contains CR, LF or NUL.
}

struct Request {
  method @0 :Text;
  # Any method token: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, PROPFIND, PROPPATCH,
  # MKCOL, COPY, MOVE, LOCK, UNLOCK, REPORT, MKCALENDAR, ... Case-sensitive, passed as is.
  path @1 :Text;
  # Path and query, starting with "/", as sent by the client (still percent-encoded), relative
  # to the session's origin. For API sessions the callee prefixes the app's API path.
  headers @2 :List(Header);
  # End-to-end request headers. Content-Length and Transfer-Encoding are never here: the
  # body union below is authoritative for framing.
  body :union {
    none @3 :Void;
    # No body (GET, HEAD, ... or an empty body with no Content-Length).
    inline @4 :Data;
    # The whole body, at most 64 KiB.
    streamed @5 :UInt64;
    # The body follows on `requestBody`; the value is its exact length, or 2^64-1 if unknown
    # (the app then receives it chunked).
  }
}

struct Response {
  status @0 :UInt16;
  # Any status from 100 to 999, passed as is (1xx interim responses are not forwarded; 101
  # only from `openWebSocket`).
  headers @1 :List(Header);
  # End-to-end response headers (Set-Cookie, ETag, Location, Cache-Control, Content-Range,
  # ...). Content-Length appears only when the body is `none` and the app sent it (a HEAD
  # or 304 response describing the representation); otherwise the body union gives it.
  body :union {
    none @2 :Void;
    # No body (HEAD, 204, 304, or empty).
    inline @3 :Data;
    # The whole body, at most 64 KiB.
    streamed @4 :UInt64;
    # The body is written to `responseBody`; the value is its exact length or 2^64-1.
  }
}

interface WebSocketPeer {
  # One direction of an open WebSocket: calls on it deliver messages to the other end.

  send @0 (message :Message) -> stream;
  # Deliver one whole message (at most 16 MiB). Messages arrive in order; the sender awaits
  # each send, so a slow receiver slows the sender. A send after `close` fails.

  close @1 (code :UInt16, reason :Text);
  # Send a Close frame with this status code (1000 normal, 1001 going away, 4000-4999 app
  # defined; 1005/1006 are never sent) and reason (at most 123 bytes of UTF-8). The other end
  # answers with its own `close`, after which both peers are dropped. Dropping a peer without
  # `close` is an abnormal closure (1006).

  struct Message {
    union {
      text @0 :Text;
      binary @1 :Data;
      ping @2 :Data;
      # At most 125 bytes. The receiving end answers with a pong of the same data (the bridge
      # forwards the caller's pings to the app, whose pong comes back; it answers the app's
      # own pings itself, keep-alive being per hop).
      pong @3 :Data;
      # At most 125 bytes.
    }
  }
}
