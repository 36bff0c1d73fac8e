//! Chat templates: a checkpoint's Jinja `chat_template` rendered the way Hugging Face's
//! `apply_chat_template` does (variables `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`; `raise_exception` available to the template).

use crate::ModelError;
use minijinja::{context, Environment, Error, ErrorKind};

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
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

/// Renders `template` for one user message, ready for the assistant's answer.
pub fn render_user_turn(
    template: &str,
    user: &str,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ModelError> {
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(template_error)?;
    tmpl.render(context! {
        messages => vec![context! { role => "user", content => user }],
        add_generation_prompt => true,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(template_error)
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
}
