//! Chat prompts: the checkpoint's own Jinja `chat_template`, rendered like transformers'
//! `apply_chat_template` (minijinja with Python string methods, `raise_exception`, `bos_token`/`eos_token`,
//! `add_generation_prompt`), and the LLaVA conversation formats that original checkpoints do not ship.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

use crate::error::{ModelError, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Renders a Jinja chat template as transformers does (`trim_blocks`, `lstrip_blocks`, Python-compatible
/// string methods, `raise_exception`).
pub fn render_chat_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    let err = |e: Error| ModelError::Template(format!("{e:#}"));
    env.add_template("chat", template).map_err(err)?;
    let tmpl = env.get_template("chat").map_err(err)?;
    tmpl.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(err)
}

/// LLaVA's conversation formats (llava/conversation.py), for checkpoints without a chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation {
    /// `vicuna_v1` / `llava_v1` (LLaVA-1.5): system prompt, then `USER: … ASSISTANT: …</s>`.
    VicunaV1,
    /// `mistral_instruct` (LLaVA-1.6-Mistral): `[INST] … [/INST]`, assistant turns end with `</s>`.
    MistralInstruct,
}

/// The system prompt of LLaVA's `conv_vicuna_v1`.
pub const VICUNA_SYSTEM: &str = "A chat between a curious human and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the human's questions.";

impl Conversation {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "vicuna_v1" | "llava_v1" => Ok(Conversation::VicunaV1),
            "mistral_instruct" => Ok(Conversation::MistralInstruct),
            other => Err(ModelError::Template(format!(
                "unknown conversation format `{other}` (vicuna_v1, llava_v1, mistral_instruct)"
            ))),
        }
    }

    /// The prompt for alternating user/assistant `messages`, ending ready for the assistant's next turn
    /// (LLaVA's `get_prompt()` after appending an empty assistant message).
    pub fn prompt(self, messages: &[Message]) -> Result<String> {
        for (i, m) in messages.iter().enumerate() {
            let want = if i % 2 == 0 { "user" } else { "assistant" };
            if m.role != want {
                return Err(ModelError::Template(format!(
                    "message {i} has role `{}`; LLaVA conversations alternate user/assistant starting with user",
                    m.role
                )));
            }
        }
        if messages.is_empty() {
            return Err(ModelError::Template(
                "a conversation needs at least one user message".into(),
            ));
        }
        let mut out = String::new();
        match self {
            Conversation::VicunaV1 => {
                // sep_style TWO: system + sep, then "ROLE: msg" + seps[i % 2], and "ASSISTANT:" to finish.
                out.push_str(VICUNA_SYSTEM);
                out.push(' ');
                for (i, m) in messages.iter().enumerate() {
                    let role = if i % 2 == 0 { "USER" } else { "ASSISTANT" };
                    out.push_str(&format!(
                        "{role}: {}{}",
                        m.content,
                        if i % 2 == 0 { " " } else { "</s>" }
                    ));
                }
                out.push_str("ASSISTANT:");
            }
            Conversation::MistralInstruct => {
                // sep_style LLAMA_2 with an empty system prompt: "[INST] msg [/INST]", " answer </s>".
                for (i, m) in messages.iter().enumerate() {
                    if i % 2 == 0 {
                        out.push_str(&format!("[INST] {} [/INST]", m.content));
                    } else {
                        out.push_str(&format!(" {} </s>", m.content));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_formats() {
        let q = [Message::new("user", "<image>\nWhat is shown?")];
        assert_eq!(
            Conversation::VicunaV1.prompt(&q).unwrap(),
            format!("{VICUNA_SYSTEM} USER: <image>\nWhat is shown? ASSISTANT:")
        );
        assert_eq!(
            Conversation::MistralInstruct.prompt(&q).unwrap(),
            "[INST] <image>\nWhat is shown? [/INST]"
        );
        let multi = [
            Message::new("user", "a"),
            Message::new("assistant", "b"),
            Message::new("user", "c"),
        ];
        assert_eq!(
            Conversation::VicunaV1.prompt(&multi).unwrap(),
            format!("{VICUNA_SYSTEM} USER: a ASSISTANT: b</s>USER: c ASSISTANT:")
        );
        assert_eq!(
            Conversation::MistralInstruct.prompt(&multi).unwrap(),
            "[INST] a [/INST] b </s>[INST] c [/INST]"
        );
        assert!(
            Conversation::VicunaV1
                .prompt(&[Message::new("assistant", "x")])
                .is_err()
        );
    }

    #[test]
    fn template_errors_are_reported() {
        let t =
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok";
        let e = render_chat_template(t, &[Message::new("system", "s")], false, "<s>", "</s>").unwrap_err();
        assert!(e.to_string().contains("first must be user"), "{e}");
        let e = render_chat_template("{% for %}", &[], false, "", "").unwrap_err();
        assert!(matches!(e, ModelError::Template(_)));
    }
}
