//! Chat-template rendering with hostile templates and messages: every rendering ends with
//! text or a typed error within the template limits (instructions, recursion, output size,
//! memory), never a hang, a crash or an out-of-memory abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pudding_models::chat::{check_template, render_user_turn_within};

/// A small memory budget: every stopped rendering strands its budget until the process
/// ends, and the fuzzer stops many.
const FUZZ_MEMORY_BUDGET: usize = 8 << 20;

fuzz_target!(|data: &[u8]| {
    let parts = pudding_fuzz::sections(data, 4);
    let text = |i: usize| String::from_utf8_lossy(parts[i]).into_owned();
    let template = text(0);
    if check_template(&template).is_err() {
        return;
    }
    let _ = render_user_turn_within(&template, &text(1), &text(2), &text(3), FUZZ_MEMORY_BUDGET);
});
