@0xb5e3f0c2a9d84f61;
# Interfaces of Granary's sample apps: how an app defines its own raw Cap'n Proto interface and
# offers it to other grains through the powerbox (`[[powerbox.provides]] interface`).

interface Counter {
  # A named tally kept by a grain of `apps/counter`.

  add @0 (amount :Int64) -> (total :Int64);
  # Add `amount` (may be negative) and return the new total.

  get @1 () -> (total :Int64, name :Text);
}
