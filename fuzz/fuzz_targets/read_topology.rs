//! Any bytes, read as a topology: errors are fine, panics and hangs are not.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(topology) = sfbpatch_topology::read_topology(&text, "fuzz") {
        let _ = sfbpatch_topology::derive(&topology);
    }
    let _ = sfbpatch_topology::load_bytes(data, "fuzz");
});
