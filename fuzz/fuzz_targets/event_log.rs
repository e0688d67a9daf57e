//! The event-log reader: any bytes as a JSON Lines log (saring::fuzzing::check_event_log).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let _verdict = saring::fuzzing::check_event_log(input);
});
