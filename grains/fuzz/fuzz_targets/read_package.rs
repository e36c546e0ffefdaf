//! Any bytes as a `.gpk`: the reader must refuse or accept without panicking, hanging or
//! allocating beyond its limits; whatever it accepts must unpack consistently.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    granary_grains_fuzz::read_and_unpack(data);
});
