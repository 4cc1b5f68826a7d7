//! Settings of the FreeSWITCH back end, and the dial-string template.

use std::time::Duration;

pub const DEFAULT_ESL_ADDR: &str = "127.0.0.1:8021";
pub const DEFAULT_ESL_PASSWORD: &str = "ClueCon";
/// Through the switch's own dialplan, as XSwitch does: the task's `dest_context` routes it.
pub const DEFAULT_DIAL_STRING: &str = "loopback/{number}/{dest_context}";

#[derive(Debug, Clone)]
pub struct FreeswitchConfig {
    /// The inbound event socket, `host:port`.
    pub addr: String,
    pub password: String,
    pub dial_string: DialTemplate,
    /// How long connecting and authenticating may take, and each `api` command.
    pub timeout: Duration,
}

impl FreeswitchConfig {
    pub fn new(addr: &str, password: &str, dial_string: &str) -> Result<Self, String> {
        if addr.trim().is_empty() {
            return Err("--esl-addr is empty".into());
        }
        Ok(FreeswitchConfig {
            addr: addr.trim().to_owned(),
            password: password.to_owned(),
            dial_string: DialTemplate::parse(dial_string)?,
            timeout: Duration::from_secs(5),
        })
    }
}

/// A task's value the dial string takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// The dialed number.
    Number,
    /// The task's `dest_context` (outbound route or gateway).
    DestContext,
    /// The task's `context` (the source context, `context-1` by default).
    Context,
}

impl Placeholder {
    pub const ALL: [Placeholder; 3] = [
        Placeholder::Number,
        Placeholder::DestContext,
        Placeholder::Context,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Number => "number",
            Placeholder::DestContext => "dest_context",
            Placeholder::Context => "context",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// `--esl-dial-string`: literal text with `{number}`, `{dest_context}` and `{context}`. A brace
/// pair holding `=` is left as it is (FreeSWITCH's own `{var=value}` channel variables); any
/// other `{name}` is an unknown placeholder, refused at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl DialTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("--esl-dial-string is empty".into());
        }
        // The dial string is one argument of `originate`, whose arguments are split at spaces
        // after quotes and backslashes are interpreted.
        if let Some(bad) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '\\'))
        {
            return Err(format!(
                "--esl-dial-string {text:?} contains {bad:?}: spaces, quotes and backslashes \
                 cannot be part of an originate dial string"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|at| open + at) else {
                return Err(format!(
                    "--esl-dial-string {text:?}: a '{{' is never closed"
                ));
            };
            let inside = &rest[open + 1..close];
            let literal_end = if inside.contains('=') {
                close + 1
            } else {
                let placeholder = Placeholder::ALL
                    .into_iter()
                    .find(|p| p.name() == inside)
                    .ok_or_else(|| {
                        format!(
                            "--esl-dial-string {text:?}: unknown placeholder {{{inside}}} \
                             (known: {{number}}, {{dest_context}}, {{context}})"
                        )
                    })?;
                push_text(&mut pieces, &rest[..open]);
                pieces.push(Piece::Value(placeholder));
                rest = &rest[close + 1..];
                continue;
            };
            push_text(&mut pieces, &rest[..literal_end]);
            rest = &rest[literal_end..];
        }
        if rest.contains('}') {
            return Err(format!(
                "--esl-dial-string {text:?}: a '}}' was never opened"
            ));
        }
        push_text(&mut pieces, rest);
        if !pieces.contains(&Piece::Value(Placeholder::Number)) {
            return Err(format!(
                "--esl-dial-string {text:?} has no {{number}}: every call would dial the same"
            ));
        }
        Ok(DialTemplate {
            text: text.to_owned(),
            pieces,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.pieces.contains(&Piece::Value(placeholder))
    }

    /// The dial string with each placeholder replaced by `value(placeholder)`. The values must
    /// have been checked with [`check_dial_value`].
    pub fn expand<'a>(&self, value: impl Fn(Placeholder) -> &'a str) -> String {
        let mut out = String::with_capacity(self.text.len() + 32);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value(placeholder) => out.push_str(value(*placeholder)),
            }
        }
        out
    }
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    if text.is_empty() {
        return;
    }
    match pieces.last_mut() {
        Some(Piece::Text(last)) => last.push_str(text),
        _ => pieces.push(Piece::Text(text.to_owned())),
    }
}

/// Whether a value may go into the dial string as it is. FreeSWITCH splits a dial string at
/// `,` and `|` (several destinations), `:_:`, `/` (endpoint parts), reads `{…}`, `[…]`, `<…>`
/// as variables and expands `$`; none of these can be escaped there, so only letters, digits and
/// `+ * # . _ -` are let through.
pub fn check_dial_value(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "{field} is empty, but the FreeSWITCH dial string needs it"
        ));
    }
    match value.chars().find(|c| !is_dial_char(*c)) {
        None => Ok(()),
        Some(bad) => Err(format!(
            "{field} {value:?} contains {bad:?}: only letters, digits and + * # . _ - can be \
             dialed through FreeSWITCH"
        )),
    }
}

fn is_dial_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '*' | '#' | '.' | '_' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(template: &str, number: &str, dest: &str, context: &str) -> String {
        DialTemplate::parse(template).unwrap().expand(|p| match p {
            Placeholder::Number => number,
            Placeholder::DestContext => dest,
            Placeholder::Context => context,
        })
    }

    #[test]
    fn the_default_and_a_gateway_template_expand_every_placeholder() {
        assert_eq!(
            expand(DEFAULT_DIAL_STRING, "1000", "context-1", "ctx"),
            "loopback/1000/context-1"
        );
        assert_eq!(
            expand(
                "sofia/gateway/{dest_context}/{number}",
                "+861390",
                "sipp",
                "c"
            ),
            "sofia/gateway/sipp/+861390"
        );
        assert_eq!(
            expand("loopback/{number}/{context}", "7", "d", "context-1"),
            "loopback/7/context-1"
        );
        assert_eq!(
            expand("{number}-{number}", "12", "d", "c"),
            "12-12",
            "a placeholder may repeat"
        );
    }

    #[test]
    fn freeswitch_variables_in_the_template_stay_as_written() {
        let template = "{sip_cid_type=none}sofia/gateway/{dest_context}/{number}";
        assert_eq!(
            expand(template, "1000", "gw", "c"),
            "{sip_cid_type=none}sofia/gateway/gw/1000"
        );
        let template = DialTemplate::parse(template).unwrap();
        assert!(template.uses(Placeholder::DestContext));
        assert!(!template.uses(Placeholder::Context));
    }

    #[test]
    fn an_unknown_placeholder_is_named_in_the_error() {
        let error = DialTemplate::parse("sofia/gateway/{gateway}/{number}").unwrap_err();
        assert!(error.contains("unknown placeholder {gateway}"), "{error}");
        let error = DialTemplate::parse("loopback/{Number}/x").unwrap_err();
        assert!(error.contains("{Number}"), "{error}");
    }

    #[test]
    fn malformed_templates_are_refused() {
        for template in [
            "",
            "loopback/{number",
            "loopback/{number}}",
            "loopback/1000/ctx",
            "loopback/{number}/a b",
            "loopback/{number}/'x'",
            "loopback/{number}\\x",
        ] {
            assert!(
                DialTemplate::parse(template).is_err(),
                "{template:?} accepted"
            );
        }
    }

    #[test]
    fn dial_values_are_letters_digits_and_a_few_signs() {
        for good in [
            "1000",
            "+8613900000000",
            "*67#1",
            "gw.example_1-b",
            "context-1",
        ] {
            assert_eq!(check_dial_value("number", good), Ok(()), "{good}");
        }
        for bad in [
            "", "10,00", "10|00", "a:_:b", "1/2", "{x=y}", "[x]", "<x>", "${x}", "a b", "1'0",
            "1\\0", "1\n0", "1@host", "１２",
        ] {
            let error = check_dial_value("number", bad).unwrap_err();
            assert!(error.starts_with("number"), "{error}");
        }
    }
}
