//! Reads arbitrary bytes as an ONNX model: the protobuf, the tensors' claimed sizes, external
//! data references and the graph walk must end in a model or an error — never a panic, a
//! hang, an allocation beyond the file's size or a read outside the file's folder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = vgg_fuzz::scratch_file("onnx", data);
    let _ = vgg::weights::onnx::read(&path);
});
