@0xa60d773a57c663bc;
# Powerbox descriptors: how a grain says what kind of capability it asks for or provides.
# Matching rules (SPEC.md, "Powerbox matching") are implemented once, in the powerbox crate.


struct PowerboxDescriptor {
  # A request or an offer is a list of descriptors; a request is satisfied by any one of them.

  tags @0 :List(Tag);
  # All tags must match for the descriptor to match.

  quality @1 :MatchQuality = acceptable;

  struct Tag {
    id @0 :UInt64;
    # The Cap'n Proto type id of an interface (the capability's type) or of a struct whose
    # value further narrows the request (e.g. an HTTP origin).

    value @1 :AnyPointer;
    # Optional: a value of the struct type named by `id`. Null matches any value. Struct values
    # match field by field (a null field matches anything); lists of structs compare as sets.
  }
}

enum MatchQuality {
  acceptable @0;
  preferred @1;
  unacceptable @2;
  # A provider that can technically satisfy the request but advises against it.
}

struct PowerboxDisplayInfo {
  # How an option is shown in the picker, in words a person understands.
  title @0 :Text;
  verbPhrase @1 :Text;
  # e.g. "may send mail as alice@example.com".
  description @2 :Text;
}

struct HttpApi {
  # Tag value for a request or offer of a `WebSession` (tag id = WebSession's interface id):
  # which HTTP API. A request names either an outside origin (answered by the HTTP driver) or
  # an API a grain's app provides (answered by grains whose manifest declares it).

  origin @0 :Text;
  # "https://api.example.com" or "http://host:8080": scheme, host and port, no path.

  pathPrefix @1 :Text;
  # Optional: requests through the capability must start with this path ("/v1/").

  apiName @2 :Text;
  # An API named in a provider app's manifest (`[[powerbox.provides]] api = "notes"`).
}

struct MailAddress {
  # Tag value for a request of a `Mail.MailSender`: which From address. Null: any address the
  # user may grant (their verified account address or the grain's own address).
  address @0 :Text;
}

struct SavedCapabilityInfo {
  # What the platform tells an app about a capability it claimed.
  title @0 :Text;
  verbPhrase @1 :Text;
}
