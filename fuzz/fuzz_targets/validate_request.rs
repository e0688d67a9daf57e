//! Request validation and normalisation: the first byte picks a saring.v1 request message, the rest is decoded
//! as protobuf and validated as the gRPC handlers do (saring::fuzzing::check_request).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let _verdict = saring::fuzzing::check_request(input);
});
