//! Task data from an untrusted Arrow IPC stream (a Hugging Face `datasets` file): the
//! stream decoder, then every task's row builder on the decoded rows. The first byte picks
//! the task.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pudding_eval::tasks::{items_from_arrow, Split, TaskName};

fuzz_target!(|data: &[u8]| {
    let [pick, stream @ ..] = data else {
        return;
    };
    let task = TaskName::ALL[*pick as usize % TaskName::ALL.len()];
    if let Ok(items) = items_from_arrow(
        stream,
        std::path::Path::new("fuzz.arrow"),
        task,
        Split::Validation,
    ) {
        for item in &items {
            // What the scorer relies on: one continuation and one choice per option, a gold
            // option among them, one context or one per option.
            let options = item.continuations.len();
            assert!(options > 0 && item.gold < options, "{item:?}");
            assert_eq!(item.choices.len(), options, "{item:?}");
            assert!(
                item.contexts.len() == 1 || item.contexts.len() == options,
                "{item:?}"
            );
        }
    }
});
