@0xe5dd57998bd58bf6;
# The app package: what a `.gpk` file carries once its signature has been checked.
# Byte layout of the file around this message: SPEC.md, "The .gpk package format".


struct Archive {
  # The whole signed payload of a package: the manifest plus the file tree that becomes the
  # grain's read-only root. Serialized as one unpacked Cap'n Proto message, then compressed.

  manifest @0 :Manifest;
  files @1 :List(File);
  # The root directory's entries. Names are unique within a directory and sorted bytewise.

  struct File {
    name @0 :Text;
    # One path component: never empty, never ".", "..", and never containing "/" or NUL.

    union {
      regular @1 :Data;
      executable @2 :Data;
      # Same as `regular`, installed with mode 0555 instead of 0444.
      symlink @3 :Text;
      # The link target, verbatim. Targets may be absolute: they resolve inside the grain's root.
      directory @4 :List(File);
    }
  }
}

struct Manifest {
  # What the platform needs to know about an app. Written by `granary pack` from granary.toml.

  appId @0 :Text;
  # 52-character base32 rendering of the Ed25519 public key that signs the app's packages.

  appTitle @1 :Text;
  appVersion @2 :UInt32;
  # Increases with every release. Grains are only ever upgraded to a higher appVersion.
  appMarketingVersion @3 :Text;
  minUpgradableAppVersion @4 :UInt32;
  # Grains created by an appVersion below this cannot be upgraded to this package.

  actions @5 :List(Action);
  continueCommand @6 :Command;
  # Runs when an existing grain starts again.

  environment @7 :List(EnvVar);
  # The app's whole environment, for every command. Nothing is inherited from anywhere else.

  http @8 :HttpSettings;
  permissions @9 :List(PermissionDef);
  # A permission's id is its index in this list; never reorder, mark `obsolete` instead.
  roles @10 :List(RoleDef);
  metadata @11 :Metadata;
  provides @12 :List(ApiProvide);
  # HTTP APIs and raw interfaces this app offers other grains through the powerbox.

  capnpPort @13 :UInt16;
  # The TCP port on 127.0.0.1 inside the grain where the app serves Cap'n Proto RPC with a
  # `Grain.AppObjects` bootstrap; 0 = none. Required when `provides` lists an interface.

  struct Action {
    title @0 :Text;
    # Button text, e.g. "New notebook".
    nounPhrase @1 :Text;
    # What one grain is called, e.g. "notebook".
    command @2 :Command;
  }

  struct Command {
    argv @0 :List(Text);
    # argv[0] is an absolute path inside the package.
  }

  struct EnvVar {
    key @0 :Text;
    value @1 :Text;
  }

  struct HttpSettings {
    port @0 :UInt16;
    # The TCP port the app listens on at 127.0.0.1 inside its grain; 0 = not an HTTP app.
    apiPath @1 :Text;
    # Path prefix under which the app serves its API to API-token holders; empty = none.
    identityHeaders @2 :List(IdentityHeader);
    # Conventional reverse-proxy headers the bridge fills from the session's identity, so an
    # unmodified app that supports proxy authentication works (client copies are stripped).
  }

  struct IdentityHeader {
    header @0 :Text;
    # e.g. "X-Remote-User"; never an X-Granary-* or hop-by-hop/framing header.
    field @1 :Text;
    # One of "user-id", "handle", "display-name", "permissions" (comma-separated names).
  }

  struct PermissionDef {
    name @0 :Text;
    title @1 :Text;
    description @2 :Text;
    obsolete @3 :Bool;
  }

  struct RoleDef {
    name @0 :Text;
    title @1 :Text;
    description @2 :Text;
    permissions @3 :List(Bool);
    # Indexed like Manifest.permissions.
    obsolete @4 :Bool;
    default @5 :Bool;
    # Exactly one role is the default for new shares.
  }

  struct ApiProvide {
    # One HTTP API a grain of this app can give another grain (SPEC.md, "Grain-to-grain").
    api @0 :Text;
    # The name requests use (`HttpApi.apiName`): lowercase letters, digits and `-`.
    title @1 :Text;
    # Shown in the picker, e.g. "Notes".
    pathPrefix @2 :Text;
    # Every request through the capability is sent below this path of the app ("/api/").
    permissions @3 :List(Bool);
    # Indexed like Manifest.permissions: what the choosing user must hold on the provider
    # grain, checked when granting and for as long as the grant lives.
    chooserPath @4 :Text;
    # A page of the app (path and query, starting with "/") where the person chooses what to
    # grant; shown inside the powerbox dialog, which ends when the page calls
    # `SessionContext.fulfillRequest`. Empty = picking the grain grants the whole entry.
    interfaceId @5 :UInt64;
    # Non-zero: this entry provides a raw Cap'n Proto interface (this type id; the app makes
    # it with `AppObjects.provide`) instead of an HTTP API; `api` and `pathPrefix` are empty.
  }

  struct Metadata {
    icon @0 :Data;
    # SVG or PNG bytes; empty = none.
    iconMediaType @1 :Text;
    description @2 :Text;
    license @3 :Text;
    author @4 :Text;
    website @5 :Text;
  }
}
