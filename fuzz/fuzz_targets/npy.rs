//! Decodes arbitrary bytes as a `.npy` array: nothing may panic, hang or allocate more
//! than the header's claims, checked against the bytes that are really there.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vgg::data::npy::parse(data);
});
