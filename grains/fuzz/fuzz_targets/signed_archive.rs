//! Any bytes as the *archive* (the Cap'n Proto message), correctly compressed and signed with a
//! fixed key, so every input gets past the signature to the message parser and the tree checks.
//! Seeds: the archives of real packages packed with the same key (see README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|archive: &[u8]| {
    granary_grains_fuzz::read_and_unpack(&granary_grains_fuzz::sign_archive(archive));
});
