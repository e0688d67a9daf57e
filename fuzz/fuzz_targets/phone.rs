//! Indonesian phone-number normalisation alone (saring::fuzzing::check_phone).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let _verdict = saring::fuzzing::check_phone(input);
});
