//! Reads arbitrary bytes as a safetensors checkpoint through the same path as `vgg
//! weights` (format sniffing, the header check, every tensor, the finite-values check).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = vgg_fuzz::scratch_file("st", data);
    let _ = vgg::weights::read(&path);
});
