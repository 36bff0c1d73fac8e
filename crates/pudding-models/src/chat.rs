//! Chat templates: a checkpoint's Jinja `chat_template` rendered the way Hugging Face's
//! `apply_chat_template` does (variables `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`; `raise_exception` available to the template).
//!
//! A template comes from a downloaded file and is executed, so it runs under limits: at
//! most [`CHAT_TEMPLATE_FUEL`] instructions, [`CHAT_TEMPLATE_RECURSION`] nested calls,
//! [`MAX_RENDERED_CHAT_BYTES`] of output and [`CHAT_TEMPLATE_MEMORY`] held at once (a
//! few concatenations double a string forty times); past one, rendering stops with
//! [`ModelError::LimitExceeded`] naming it. The memory budget holds where the binary
//! installs [`pudding_core::memory::BudgetedAllocator`] (the `pudding` CLI and the
//! examples do).

use crate::ModelError;
use minijinja::{context, Environment, Error, ErrorKind};

/// The most template instructions one rendering may run (real chat templates run a few
/// hundred per message; nested loops over large ranges run out).
pub const CHAT_TEMPLATE_FUEL: u64 = 2_000_000;
/// The deepest nesting of macro calls and includes in a template.
pub const CHAT_TEMPLATE_RECURSION: usize = 64;
/// The most bytes a rendered chat prompt may have (far above any model's context).
pub const MAX_RENDERED_CHAT_BYTES: usize = 16 << 20;
/// The most bytes one rendering may hold at once (the message, the template's values and
/// the output together; see [`pudding_core::memory::run_with_budget`]).
pub const CHAT_TEMPLATE_MEMORY: usize = 256 << 20;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
    env.set_recursion_limit(CHAT_TEMPLATE_RECURSION);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env
}

fn template_error(e: Error) -> ModelError {
    ModelError::Tokenizer(format!("chat template: {e:#}"))
}

/// Checks that `template` parses as Jinja.
pub fn check_template(template: &str) -> Result<(), ModelError> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(template_error)
}

/// One message of a conversation: a role (`system`, `user`, `assistant`, ...) and its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: String,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Renders `template` for a conversation, ready for the assistant's answer
/// (`add_generation_prompt`), under the limits of this module.
pub fn render_conversation(
    template: &str,
    messages: &[ChatMessage],
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ModelError> {
    render_conversation_within(
        template,
        messages,
        bos_token,
        eos_token,
        CHAT_TEMPLATE_MEMORY,
    )
}

/// Renders `template` for one user message, ready for the assistant's answer.
pub fn render_user_turn(
    template: &str,
    user: &str,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ModelError> {
    render_user_turn_within(template, user, bos_token, eos_token, CHAT_TEMPLATE_MEMORY)
}

/// [`render_user_turn`] with a memory budget other than [`CHAT_TEMPLATE_MEMORY`] (e.g. a
/// fuzzer's, small enough that stopped renderings do not add up).
pub fn render_user_turn_within(
    template: &str,
    user: &str,
    bos_token: &str,
    eos_token: &str,
    memory_budget: usize,
) -> Result<String, ModelError> {
    render_conversation_within(
        template,
        &[ChatMessage::new("user", user)],
        bos_token,
        eos_token,
        memory_budget,
    )
}

/// [`render_conversation`] with a memory budget other than [`CHAT_TEMPLATE_MEMORY`].
pub fn render_conversation_within(
    template: &str,
    messages: &[ChatMessage],
    bos_token: &str,
    eos_token: &str,
    memory_budget: usize,
) -> Result<String, ModelError> {
    use pudding_core::memory::{run_with_budget, BudgetError, MAX_STRANDED_BYTES};
    let owned = [template, bos_token, eos_token].map(str::to_string);
    let messages = messages.to_vec();
    let rendered = run_with_budget(memory_budget, move || {
        let [template, bos_token, eos_token] = owned;
        render_unbudgeted(&template, &messages, &bos_token, &eos_token)
    });
    match rendered {
        Ok(result) => result,
        Err(BudgetError::OverBudget { limit }) => Err(ModelError::LimitExceeded {
            what: "chat template memory (CHAT_TEMPLATE_MEMORY)",
            limit: limit as u64,
        }),
        Err(BudgetError::TooMuchStranded { .. }) => Err(ModelError::LimitExceeded {
            what:
                "memory held by stopped chat templates (pudding_core::memory::MAX_STRANDED_BYTES)",
            limit: MAX_STRANDED_BYTES as u64,
        }),
    }
}

/// [`render_conversation`] on the calling thread, with every limit but the memory budget.
fn render_unbudgeted(
    template: &str,
    messages: &[ChatMessage],
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ModelError> {
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(template_error)?;
    let mut out = CappedOutput::default();
    let rendered = tmpl.render_captured_to(
        context! {
            messages => messages
                .iter()
                .map(|m| context! { role => m.role, content => m.content })
                .collect::<Vec<_>>(),
            add_generation_prompt => true,
            bos_token => bos_token,
            eos_token => eos_token,
        },
        &mut out,
    );
    match rendered {
        Ok(_) => String::from_utf8(out.bytes)
            .map_err(|_| ModelError::Tokenizer("chat template: output is not UTF-8".into())),
        Err(_) if out.overflowed => Err(ModelError::LimitExceeded {
            what: "rendered chat prompt bytes (MAX_RENDERED_CHAT_BYTES)",
            limit: MAX_RENDERED_CHAT_BYTES as u64,
        }),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(ModelError::LimitExceeded {
            what: "chat template instructions (CHAT_TEMPLATE_FUEL)",
            limit: CHAT_TEMPLATE_FUEL,
        }),
        Err(e) => Err(template_error(e)),
    }
}

/// A sink that refuses to grow past [`MAX_RENDERED_CHAT_BYTES`].
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_CHAT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered chat prompt too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2's template (as stored in its GGUF): a default system turn when the first
    /// message is not a system one.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_a_user_turn_with_the_default_system_turn() {
        let out = render_user_turn(SMOLLM2, "Hi there", "", "<|im_end|>").unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn renders_a_conversation_in_order() {
        let messages = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Name a colour."),
        ];
        let out = render_conversation(SMOLLM2, &messages, "", "<|im_end|>").unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn special_variables_and_raise_exception() {
        let t = "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}";
        assert_eq!(
            render_user_turn(t, "x", "<s>", "</s>").unwrap(),
            "<s>[user:x]></s>"
        );
        let raising = "{{ raise_exception('only system and user roles') }}";
        let err = render_user_turn(raising, "x", "", "").unwrap_err();
        assert!(
            err.to_string().contains("only system and user roles"),
            "{err}"
        );
        assert!(check_template("{% for %}").is_err());
        assert!(check_template(SMOLLM2).is_ok());
    }

    /// Hostile templates stop at a named limit, quickly, instead of hanging or exhausting
    /// memory.
    #[test]
    fn hostile_templates_stop_at_a_named_limit() {
        let started = std::time::Instant::now();
        let nested =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        match render_user_turn(nested, "x", "", "") {
            Err(ModelError::LimitExceeded { what, .. }) => assert!(what.contains("FUEL"), "{what}"),
            other => panic!("{other:?}"),
        }
        let huge = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
        match render_user_turn(huge, "x", "", "") {
            Err(ModelError::LimitExceeded { what, .. }) => {
                assert!(what.contains("MAX_RENDERED_CHAT_BYTES"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        let deep = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(render_user_turn(deep, "x", "", "").is_err());
        // Forty doublings of a string take a few instructions and a terabyte.
        assert!(pudding_core::memory::budget_enforced());
        let doubling = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
        match render_user_turn(doubling, "x", "", "") {
            Err(ModelError::LimitExceeded { what, .. }) => {
                assert!(what.contains("CHAT_TEMPLATE_MEMORY"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        let unrolled = "{% set a = 'x' * 50000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d|length }}";
        assert!(matches!(
            render_user_turn(unrolled, "x", "", ""),
            Err(ModelError::LimitExceeded { .. })
        ));
        assert!(started.elapsed().as_secs() < 60);
    }
}
