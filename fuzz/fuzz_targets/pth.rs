//! Opens arbitrary bytes as a checkpoint and reads every tensor: nothing may
//! panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vgg::weights::pth::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(checkpoint) = Checkpoint::from_bytes(data.to_vec()) else {
        return;
    };
    for entry in checkpoint.entries() {
        if checkpoint.read_f32(entry).is_err() {
            let _ = checkpoint.read_i64(entry);
        }
    }
});
