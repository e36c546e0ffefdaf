@0x8e6e401a027fd288;
# The grain's view of the platform, served by its supervisor on the app's fd 3, and the
# app's view served back to the platform.


using Util = import "util.capnp";
using Powerbox = import "powerbox.capnp";
using WebSession = import "web-session.capnp".WebSession;
using Mail = import "mail.capnp";

interface GrainApi {
  # The supervisor's bootstrap capability for the app. Everything a grain can do outside its
  # sandbox starts here, and every capability it obtains is wrapped in a revocation membrane.

  save @0 (cap :Capability, label :Text) -> (token :Data);
  # Persist a capability this grain holds (obtained from claimRequest or restore). Returns a
  # SturdyRef token owned by this grain; only this grain can restore it. The label is shown to
  # the grain's owner in "What can this reach".

  restore @1 (token :Data) -> (cap :Capability);
  # Turn a token previously returned by `save` to *this* grain back into a live capability.
  # Fails with "revoked" if the grant was revoked or one of its requirements no longer holds.

  drop @2 (token :Data);
  # Forget a saved capability: the token stops working for everyone.

  stayAwake @3 (reason :Text) -> (handle :Util.Handle);
  # Keep the grain running while the handle is held (a wake lock, shown to the owner).
}

interface MainView {
  # The app's bootstrap capability for the supervisor.

  newSession @0 (context :SessionContext, params :SessionParams)
      -> (session :WebSession, directKey :Data);
  # Open one UI or API session for one user. `directKey`, when not empty, names the same
  # session on the grain's direct web channel (`WebChannel.session`): the server then sends the
  # session's requests there instead of through the supervisor. Random, chosen by the bridge,
  # meaningful only on that channel; empty when the app offers no direct channel.

  restore @1 (objectId :Data) -> (cap :Capability);
  # Restore a capability the app itself implements and previously handed out.

  drop @2 (objectId :Data);

  deliverMail @3 (message :Mail.MailMessage);
  # Mail sent to the grain's address (`<grain id>@<mail domain>`). Returning means the grain
  # stored it; an error makes the platform's SMTP listener answer 451 (try again later).
  # granary-bridge writes it as a Maildir file under `/var/mail/new`.

  provide @4 (interfaceId :UInt64, descriptor :Powerbox.PowerboxDescriptor, user :UserInfo,
              permissions :List(Bool)) -> (cap :Capability);
  # A raw Cap'n Proto interface this app declares in `[[powerbox.provides]] interface`, made
  # live for a grant: `descriptor` is the one the grant was made for (the request's, or the
  # one the app's chooser passed to `fulfillRequest`), `user` and `permissions` those of the
  # person who chose this grain (the grant requires they keep them). The platform wraps the
  # result in a revocation membrane before anyone else sees it. granary-bridge forwards this to
  # the app's `AppObjects` on 127.0.0.1:<capnp_port>.
}

interface WebChannel {
  # The bootstrap of a grain's direct web channel: a unix socket the supervisor creates outside
  # the sandbox, in a directory only the server can reach, and hands to the bridge as a
  # listening socket on fd 4. It carries only the data path of sessions that were opened
  # through the supervisor (which still mediates `newSession` and the session's context).

  session @0 (directKey :Data) -> (session :WebSession);
  # The session `MainView.newSession` returned with this key, for as long as it is held
  # through the supervisor; fails for an unknown or dropped key.

  responseBody @1 (ticket :Data, stream :Util.ByteStream);
  # Claims the streamed response body of a lane exchange (`LaneResponse.bodyTicket`): the
  # bridge writes it to `stream` as it would to `WebSession.request`'s `responseBody`. Fails
  # for an unknown ticket, one already claimed, or one older than 30 s.
}

struct LaneFrame {
  # One message on a request lane (SPEC.md, "Request lanes"): a connection to the grain's
  # direct web channel that starts with the 8 bytes "GRLANE01", then carries these as
  # standard Cap'n Proto stream messages in both directions, without RPC. At most 256 KiB each.
  exchange @0 :UInt32;
  # Chosen by the server; the bridge's answer carries the same number.
  union {
    request @1 :LaneRequest;
    # Server to bridge: one HTTP exchange, body `none` or `inline` only.
    cancel @2 :Void;
    # Server to bridge: the caller went away; the bridge drops the exchange.
    response @3 :LaneResponse;
    # Bridge to server.
    failed @4 :Text;
    # Bridge to server: the exchange broke the contract or its session is gone (as an
    # exception would on `WebSession.request`).
  }
}

struct LaneRequest {
  directKey @0 :Data;
  # As for `WebChannel.session`.
  request @1 :import "web-session.capnp".Request;
}

struct LaneResponse {
  response @0 :import "web-session.capnp".Response;
  bodyTicket @1 :Data;
  # 16 random bytes when `response.body` is `streamed`: claim it with
  # `WebChannel.responseBody`. Empty otherwise.
}

interface AppObjects {
  # The bootstrap an app serves with Cap'n Proto RPC on 127.0.0.1:<capnp_port> inside its grain
  # when its manifest provides raw interfaces. Same contract as `MainView.provide`.

  provide @0 (interfaceId :UInt64, descriptor :Powerbox.PowerboxDescriptor, user :UserInfo,
              permissions :List(Bool)) -> (cap :Capability);
}

struct SessionParams {
  user @0 :UserInfo;
  permissions @1 :List(Bool);
  # Indexed like the manifest's permission list; computed by the platform over the sharing graph.
  sessionId @2 :Text;
  tabId @3 :Text;
  basePath @4 :Text;
  # Absolute URL of the session's origin, e.g. "http://9f2c….localhost:6080".
  kind @5 :Kind;
  enum Kind {
    ui @0;
    api @1;
  }
}

struct UserInfo {
  # Who is on the other end of a session. Anonymous visitors have an empty `id`.
  id @0 :Text;
  # Stable per user per grain; never the user's account id.
  displayName @1 :Text;
  handle @2 :Text;
}

interface SessionContext {
  # Per-session link back to the platform, passed with each new session.

  claimRequest @0 (claimToken :Text, requiredPermissions :List(Bool)) -> (cap :Capability);
  # Redeem a one-time powerbox claim token that the browser obtained for this session. The
  # platform checks the token was issued to this session and that the user still holds
  # `requiredPermissions` on this grain; the capability carries that requirement.

  fulfillRequest @1 (cap :Capability, descriptor :Powerbox.PowerboxDescriptor,
                     displayInfo :Powerbox.PowerboxDisplayInfo);
  # A provider grain answers the powerbox request its chooser UI (this session) was opened
  # for. `descriptor` names what the person chose among what the app declares: `WebSession` +
  # `HttpApi{apiName, pathPrefix}` for one of its HTTP APIs, `pathPrefix` at or below the
  # declared one (the grant is then narrowed to it), or a declared raw interface's type id
  # with any tag values (passed to `MainView.provide` whenever the grant is made live).
  # `cap` must be null: the platform makes the capability itself, so it can be saved and
  # restored after restarts. Fails if this session is not a chooser or the descriptor names
  # nothing the app declares or does not match the request.

  offer @2 (cap :Capability, descriptor :Powerbox.PowerboxDescriptor,
            displayInfo :Powerbox.PowerboxDisplayInfo);
  # Offer a capability to the user (e.g. add a view to their grain list).
}
