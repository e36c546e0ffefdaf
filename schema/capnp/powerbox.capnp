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
