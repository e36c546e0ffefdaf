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

  newSession @0 (context :SessionContext, params :SessionParams) -> (session :WebSession);
  # Open one UI or API session for one user.

  restore @1 (objectId :Data) -> (cap :Capability);
  # Restore a capability the app itself implements and previously handed out.

  drop @2 (objectId :Data);

  deliverMail @3 (message :Mail.MailMessage);
  # Mail sent to the grain's address (`<grain id>@<mail domain>`). Returning means the grain
  # stored it; an error makes the platform's SMTP listener answer 451 (try again later).
  # granary-bridge writes it as a Maildir file under `/var/mail/new`.
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
  # A provider grain answers a powerbox request shown in its chooser UI.

  offer @2 (cap :Capability, descriptor :Powerbox.PowerboxDescriptor,
            displayInfo :Powerbox.PowerboxDisplayInfo);
  # Offer a capability to the user (e.g. add a view to their grain list).
}
