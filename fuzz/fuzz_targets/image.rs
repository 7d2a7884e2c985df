//! Decodes arbitrary bytes as an image (JPEG, PNG, WebP, BMP, GIF): the header's size is
//! checked against the pixel limit before decoding, and nothing may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = vgg_fuzz::scratch_file("img", data);
    let _ = vgg::data::image::load_rgb(&path);
});
