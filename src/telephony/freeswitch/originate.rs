//! The `originate` command of one call, built as text by a pure function.
//!
//! FreeSWITCH reads that text in three passes, each of which interprets backslashes and single
//! quotes (its `switch_separate_string`; read, not copied):
//! 1. `originate` splits its arguments at spaces; a token may be single-quoted, and `\\`, `\'`,
//!    `\"`, `\s` (space), `\n`… are unescaped;
//! 2. the leading `{…}` of the dial string is split at commas (`\,` keeps one), quotes paired
//!    and escapes undone again;
//! 3. each `name=value` is split at its first `=`, and the value unescaped a third time, its
//!    leading and trailing spaces dropped unless written `\s`.
//!
//! Every channel variable value is escaped for all three, so that a comma, quote, space,
//! backslash or `=` in a task's field stays inside its value. Two things cannot be escaped and
//! are refused instead (see [`check_variable`]): braces (the end of `{…}` is found by counting
//! braces, ignoring quotes and escapes) and control characters (a newline would end the event
//! socket command), and `:_:` (FreeSWITCH's enterprise separator, looked for in the whole dial
//! string before anything is unescaped). `$` is refused too in what FreeSWITCH expands before use (file paths, the
//! caller id).

use std::path::Path;

use super::config::{check_dial_value, DialTemplate, Placeholder};
use crate::telephony::{AfterAnswer, CallRequest, CallSettings};

/// FreeSWITCH's "enterprise originate" separator: looked for in the whole dial string, variables
/// included, before anything is unescaped, so no escaping hides it.
const ENTERPRISE_SEPARATOR: &str = ":_:";

/// The channel variable that holds the prompt `&playback` plays.
pub const PLAYBACK_VARIABLE: &str = "outcall_playback";

/// The media of a task, as paths or references FreeSWITCH plays (see `media.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayableMedia {
    pub confirm_prompt: Option<String>,
    pub playback: Option<String>,
}

/// Everything one call's originate needs beyond the request.
pub struct OriginateInputs<'a> {
    pub dial_string: &'a DialTemplate,
    pub media: &'a PlayableMedia,
    /// Where `record_session` writes when the task records.
    pub recording: Option<&'a Path>,
}

/// The whole command, without the `bgapi ` in front: e.g.
/// `originate {origination_uuid=…,originate_timeout=30,…,outcall_playback=/p.wav}loopback/1000/context-1
/// &playback(${outcall_playback})`.
/// Fails, naming the field, on a value that cannot be made safe (see [`check_settings`] and
/// [`check_dial_value`]).
pub fn originate_command(
    request: &CallRequest,
    inputs: &OriginateInputs<'_>,
) -> Result<String, String> {
    let settings = &request.settings;
    check_dial_value("number", &request.dest_number)?;
    check_settings(settings, inputs.dial_string)?;

    let mut variables: Vec<(&str, String)> = vec![
        ("origination_uuid", request.uuid.clone()),
        (
            "originate_timeout",
            settings.calling_time.as_secs().max(1).to_string(),
        ),
    ];
    if !settings.cid_number.is_empty() {
        variables.push(("origination_caller_id_number", settings.cid_number.clone()));
    }
    if !settings.cid_name.is_empty() {
        variables.push(("origination_caller_id_name", settings.cid_name.clone()));
    }
    // Always, not only for `disable_ring_back`: an API originate counts early media as success
    // (FreeSWITCH's `early_ok`), so without it the action would run before the callee answers;
    // the default loopback dial string gives early media on every call (seen live).
    variables.push(("ignore_early_media", "true".into()));
    // The confirm variables are the leg's own (`[…]` before the dial string), not the call's
    // (`{…}`): FreeSWITCH runs the confirm step on every originate whose `{…}` names a key, and a
    // loopback dial string makes two (ours, then the dialplan's bridge, which gets the leg's
    // variables), so a `{…}` key was asked twice and the second wait never ended. mod_loopback
    // hands leg variables to its far leg and drops `group_confirm_*` from ours: the bridge asks
    // once. A gateway leg reads them from itself the same way. The read timeout is only read from
    // `{…}` (FreeSWITCH's default 5 s between prompts); `group_confirm_timeout` bounds the step.
    let mut leg_variables: Vec<(&str, String)> = Vec::new();
    if let Some(confirm) = &settings.confirm {
        leg_variables.push(("group_confirm_key", confirm.key.clone()));
        if let Some(prompt) = &inputs.media.confirm_prompt {
            check_variable("group_confirm_file", prompt, Expanded::Yes)?;
            check_leg_variable("group_confirm_file", prompt)?;
            leg_variables.push(("group_confirm_file", prompt.clone()));
        }
        leg_variables.push((
            "group_confirm_read_timeout",
            confirm.timeout.as_millis().to_string(),
        ));
        // The whole confirm window, from the answer (whole seconds): without it FreeSWITCH
        // replays the prompt until the originate timeout, which counts from the dialing.
        leg_variables.push((
            "group_confirm_timeout",
            confirm
                .timeout
                .as_millis()
                .div_ceil(1000)
                .max(1)
                .to_string(),
        ));
    }
    let playback = match &settings.action {
        AfterAnswer::Playback(_) => Some(
            inputs
                .media
                .playback
                .as_deref()
                .ok_or("data: the prompt to play was not resolved")?,
        ),
        _ => None,
    };
    if let Some(path) = playback {
        check_variable("data", path, Expanded::Yes)?;
        variables.push((PLAYBACK_VARIABLE, path.to_owned()));
    }
    if let Some(path) = inputs.recording {
        let path = check_record_path(path)?;
        variables.push(("execute_on_answer", format!("record_session {path}")));
    }

    let dial_string = inputs.dial_string.expand(|placeholder| match placeholder {
        Placeholder::Number => &request.dest_number,
        Placeholder::DestContext => &settings.dest_context,
        Placeholder::Context => &settings.context,
    });
    let mut command = String::with_capacity(256);
    command.push_str("originate {");
    push_variables(&mut command, &variables);
    command.push('}');
    if leg_variables.is_empty() {
        command.push_str(&dial_string);
    } else {
        // After the template's own `{…}`, if it has one; into its own `[…]`, if it has one.
        let at = leading_block_end(&dial_string, '{', '}');
        command.push_str(&dial_string[..at]);
        command.push('[');
        push_variables(&mut command, &leg_variables);
        match dial_string[at..].strip_prefix('[') {
            Some(rest) => {
                command.push(',');
                command.push_str(rest);
            }
            None => {
                command.push(']');
                command.push_str(&dial_string[at..]);
            }
        }
    }
    command.push(' ');
    match &settings.action {
        AfterAnswer::Hangup => command.push_str("&hangup(NORMAL_CLEARING)"),
        // Through a channel variable, which FreeSWITCH expands when the application runs:
        // `&app(…)` ends at the first `)`, which FreeSWITCH's own `tone_stream://%(…)` has.
        AfterAnswer::Playback(_) => command.push_str("&playback(${outcall_playback})"),
        AfterAnswer::Transfer(extension) => {
            command.push_str(extension);
            command.push_str(" XML ");
            command.push_str(&settings.dest_context);
        }
    }
    Ok(command)
}

/// `name=value,…`, each value escaped for the three passes (see the module's doc).
fn push_variables(command: &mut String, variables: &[(&str, String)]) {
    for (index, (name, value)) in variables.iter().enumerate() {
        if index > 0 {
            command.push(',');
        }
        command.push_str(name);
        command.push('=');
        command.push_str(&argument(&escape_in_list(&escape_value(value))));
    }
}

/// Where a leading `open…close` block of `text` ends (0 without one).
fn leading_block_end(text: &str, open: char, close: char) -> usize {
    if !text.starts_with(open) {
        return 0;
    }
    text.find(close).map_or(0, |at| at + close.len_utf8())
}

/// A leg variable's value may not hold a bracket: FreeSWITCH finds the end of `[…]` by counting
/// them.
fn check_leg_variable(field: &str, value: &str) -> Result<(), String> {
    if value.contains(['[', ']']) {
        return Err(format!(
            "{field} {value:?} contains a bracket, which FreeSWITCH would read as the end or start \
             of the call leg's variables"
        ));
    }
    Ok(())
}

/// Whether a task's settings can be put into an originate: refuses, naming the field, what no
/// escaping makes safe. The number is checked per call, by [`originate_command`].
pub fn check_settings(settings: &CallSettings, dial_string: &DialTemplate) -> Result<(), String> {
    if dial_string.uses(Placeholder::DestContext) {
        check_dial_value("dest_context", &settings.dest_context)?;
    }
    if dial_string.uses(Placeholder::Context) {
        check_dial_value("context", &settings.context)?;
    }
    check_variable("cid_number", &settings.cid_number, Expanded::Yes)?;
    check_variable("cid_name", &settings.cid_name, Expanded::Yes)?;
    if let Some(confirm) = &settings.confirm {
        check_variable("group_confirm_key", &confirm.key, Expanded::No)?;
        check_leg_variable("group_confirm_key", &confirm.key)?;
    }
    if let AfterAnswer::Transfer(extension) = &settings.action {
        // Both are arguments of their own, and `originate` runs an `&application(…)` named as
        // the extension, so only plain dialplan names pass.
        check_dial_value("data (the transfer extension)", extension)?;
        check_dial_value(
            "dest_context (the transfer's context)",
            &settings.dest_context,
        )?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expanded {
    Yes,
    No,
}

/// A channel variable's value: anything but control characters and braces (and `$` where
/// FreeSWITCH may expand variables).
fn check_variable(field: &str, value: &str, expanded: Expanded) -> Result<(), String> {
    if let Some(bad) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{field} contains the control character {bad:?}, which cannot be sent to FreeSWITCH"
        ));
    }
    if value.contains(['{', '}']) {
        return Err(format!(
            "{field} {value:?} contains a brace, which FreeSWITCH would read as the end or start \
             of the call's variables"
        ));
    }
    if value.contains(ENTERPRISE_SEPARATOR) {
        return Err(format!(
            "{field} {value:?} contains {ENTERPRISE_SEPARATOR:?}, which FreeSWITCH reads as a \
             second originate wherever it is in the dial string"
        ));
    }
    if expanded == Expanded::Yes && value.contains('$') {
        return Err(format!(
            "{field} {value:?} contains '$', which FreeSWITCH would expand as a variable"
        ));
    }
    Ok(())
}

/// `record_session` splits its argument at spaces and strips quotes.
pub fn check_record_path(path: &Path) -> Result<&str, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("the recording path {} is not UTF-8", path.display()))?;
    check_variable("the recording path", text, Expanded::Yes)?;
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '+'))
    {
        return Err(format!(
            "the recording path {text:?} contains {bad:?}, which FreeSWITCH's record_session \
             cannot take: use a data directory without it"
        ));
    }
    Ok(text)
}

/// Pass 3: a value after `name=`.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            ' ' if index == 0 || index == last => out.push_str("\\s"),
            c => out.push(c),
        }
    }
    out
}

/// Pass 2: an item of the comma-separated `{…}` list.
fn escape_in_list(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            ',' => out.push_str("\\,"),
            c => out.push(c),
        }
    }
    out
}

/// Pass 1: part of one space-separated argument of `originate`; single-quoted when it holds a
/// space.
fn argument(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let quoted = text.contains(' ');
    if quoted {
        out.push('\'');
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    if quoted {
        out.push('\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc, time::Duration};

    use super::*;
    use crate::telephony::{Confirm, MediaRef};

    /// FreeSWITCH's reading of the text, written from its documented behaviour (see the module
    /// doc) to check our escaping: a port of nothing, a model of the three passes.
    mod model {
        /// Splits at `delim` outside quotes, `\` protecting the next character (pass 1: at
        /// runs of spaces).
        pub fn split(text: &str, delim: char, limit: usize) -> Vec<String> {
            let chars: Vec<char> = text.chars().collect();
            let mut parts = Vec::new();
            let mut start = 0;
            let mut inside = false;
            let mut i = 0;
            while i < chars.len() {
                let c = chars[i];
                if parts.len() + 1 == limit {
                    break;
                }
                if c == '\\' {
                    i += 2;
                    continue;
                }
                if c == '\'' && (delim == ' ' || inside || chars[i + 1..].contains(&'\'')) {
                    inside = !inside;
                } else if c == delim && !inside {
                    parts.push(chars[start..i].iter().collect::<String>());
                    i += 1;
                    if delim == ' ' {
                        while i < chars.len() && chars[i] == ' ' {
                            i += 1;
                        }
                    }
                    start = i;
                    continue;
                }
                i += 1;
            }
            parts.push(chars[start.min(chars.len())..].iter().collect());
            parts
                .into_iter()
                .map(|part| cleanup(&part, if delim == ' ' { None } else { Some(delim) }))
                .collect()
        }

        /// Undoes escapes and pairs of quotes, drops leading and unquoted trailing spaces.
        pub fn cleanup(text: &str, delim: Option<char>) -> String {
            let chars: Vec<char> = text.chars().collect();
            let mut i = 0;
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let mut out: Vec<char> = Vec::new();
            let mut end = 0;
            let mut inside = false;
            while i < chars.len() {
                let c = chars[i];
                if c == '\\' && i + 1 < chars.len() {
                    let next = chars[i + 1];
                    let unescaped = match next {
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        's' => Some(' '),
                        '\'' | '"' | '\\' => Some(next),
                        other if Some(other) == delim => Some(other),
                        _ => None,
                    };
                    if let Some(unescaped) = unescaped {
                        out.push(unescaped);
                        end = out.len();
                        i += 2;
                        continue;
                    }
                }
                if c == '\'' && (inside || chars[i + 1..].contains(&'\'')) {
                    inside = !inside;
                    if inside {
                        end = out.len();
                    }
                } else {
                    out.push(c);
                    if c != ' ' || inside {
                        end = out.len();
                    }
                }
                i += 1;
            }
            out.truncate(end);
            out.into_iter().collect()
        }

        /// The command's arguments, and the variables of its leading `{…}`.
        pub fn parse(command: &str) -> (Vec<String>, Vec<(String, String)>, String) {
            let arguments = split(command, ' ', usize::MAX);
            let dial = &arguments[1];
            assert!(dial.starts_with('{'), "{dial}");
            let mut depth = 0;
            let close = dial
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(at, _)| at)
                .expect("the variables end");
            let variables = split(&dial[1..close], ',', usize::MAX)
                .into_iter()
                .map(|item| {
                    let pair = split(&item, '=', 2);
                    (pair[0].clone(), pair.get(1).cloned().unwrap_or_default())
                })
                .collect();
            let mut variables: Vec<(String, String)> = variables;
            let mut rest = dial[close + 1..].to_owned();
            // The leg's own `[…]`, whose variables are listed after the call's.
            if rest.starts_with('[') {
                let end = rest.find(']').expect("the leg variables end");
                variables.extend(
                    split(&rest[1..end], ',', usize::MAX)
                        .into_iter()
                        .map(|item| {
                            let pair = split(&item, '=', 2);
                            (pair[0].clone(), pair.get(1).cloned().unwrap_or_default())
                        }),
                );
                rest = rest[end + 1..].to_owned();
            }
            (arguments, variables, rest)
        }
    }

    fn settings() -> CallSettings {
        CallSettings::for_test("context-1")
    }

    fn request(settings: CallSettings) -> CallRequest {
        CallRequest {
            uuid: "6f1c0c52-0000-4000-8000-000000000001".into(),
            number_id: 7,
            dest_number: "1000".into(),
            settings: Arc::new(settings),
        }
    }

    fn template() -> DialTemplate {
        DialTemplate::parse(super::super::config::DEFAULT_DIAL_STRING).unwrap()
    }

    fn build(settings: CallSettings, media: PlayableMedia, recording: Option<&Path>) -> String {
        originate_command(
            &request(settings),
            &OriginateInputs {
                dial_string: &template(),
                media: &media,
                recording,
            },
        )
        .unwrap()
    }

    fn variable<'a>(variables: &'a [(String, String)], name: &str) -> Option<&'a str> {
        variables
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn a_plain_call_hangs_up_after_the_answer() {
        assert_eq!(
            build(settings(), PlayableMedia::default(), None),
            "originate {origination_uuid=6f1c0c52-0000-4000-8000-000000000001,\
             originate_timeout=30,ignore_early_media=true}loopback/1000/context-1 \
             &hangup(NORMAL_CLEARING)"
        );
    }

    #[test]
    fn every_task_setting_has_its_variable() {
        let mut settings = settings();
        settings.cid_number = "95588".into();
        settings.cid_name = "Bank".into();
        settings.disable_ring_back = true;
        settings.calling_time = Duration::from_secs(45);
        settings.confirm = Some(Confirm {
            key: "1".into(),
            timeout: Duration::from_secs(7),
            prompt: MediaRef::parse("/data/media/2.wav"),
        });
        settings.action = AfterAnswer::Playback(MediaRef::parse("/data/media/1.wav").unwrap());
        let media = PlayableMedia {
            confirm_prompt: Some("/data/media/2.wav".into()),
            playback: Some("/data/media/1.wav".into()),
        };
        let recording = PathBuf::from("/data/recordings/6f1c.wav");
        assert_eq!(
            build(settings, media, Some(&recording)),
            "originate {origination_uuid=6f1c0c52-0000-4000-8000-000000000001,\
             originate_timeout=45,origination_caller_id_number=95588,\
             origination_caller_id_name=Bank,ignore_early_media=true,\
             outcall_playback=/data/media/1.wav,\
             execute_on_answer='record_session /data/recordings/6f1c.wav'}\
             [group_confirm_key=1,group_confirm_file=/data/media/2.wav,\
             group_confirm_read_timeout=7000,group_confirm_timeout=7]\
             loopback/1000/context-1 &playback(${outcall_playback})"
        );
    }

    /// The confirm variables are the leg's: placed after a template's own `{…}`, merged into
    /// its own `[…]`, and a bracket in them is refused.
    #[test]
    fn confirm_variables_belong_to_the_leg() {
        let mut settings = settings();
        settings.confirm = Some(Confirm {
            key: "1".into(),
            timeout: Duration::from_secs(3),
            prompt: None,
        });
        let with = |template: &str, settings: CallSettings, media: PlayableMedia| {
            originate_command(
                &request(settings),
                &OriginateInputs {
                    dial_string: &DialTemplate::parse(template).unwrap(),
                    media: &media,
                    recording: None,
                },
            )
        };
        let leg = "group_confirm_key=1,group_confirm_read_timeout=3000,group_confirm_timeout=3";
        for (template, dialed) in [
            ("loopback/{number}/x", format!("[{leg}]loopback/1000/x")),
            (
                "{a=b}sofia/gateway/g/{number}",
                format!("{{a=b}}[{leg}]sofia/gateway/g/1000"),
            ),
            (
                "[c=d]sofia/gateway/g/{number}",
                format!("[{leg},c=d]sofia/gateway/g/1000"),
            ),
        ] {
            let command = with(template, settings.clone(), PlayableMedia::default()).unwrap();
            assert!(
                command.contains(&format!("ignore_early_media=true}}{dialed} ")),
                "{command}"
            );
            assert!(!command.contains("{group_confirm"), "{command}");
        }
        let hostile = PlayableMedia {
            confirm_prompt: Some("/data/media/a]b.wav".into()),
            playback: None,
        };
        let refused = with("loopback/{number}/x", settings, hostile).unwrap_err();
        assert!(refused.contains("group_confirm_file"), "{refused}");
    }

    #[test]
    fn a_transfer_goes_to_the_extension_in_the_destination_context() {
        let mut settings = settings();
        settings.dest_context = "sales".into();
        settings.action = AfterAnswer::Transfer("8001".into());
        let command = build(settings, PlayableMedia::default(), None);
        assert!(
            command.ends_with("}loopback/1000/sales 8001 XML sales"),
            "{command}"
        );
    }

    #[test]
    fn a_gateway_template_and_the_source_context() {
        let mut settings = settings();
        settings.dest_context = "sipp".into();
        settings.context = "from-dialer".into();
        for (template, dialed) in [
            (
                "sofia/gateway/{dest_context}/{number}",
                "sofia/gateway/sipp/1000",
            ),
            ("loopback/{number}/{context}", "loopback/1000/from-dialer"),
        ] {
            let command = originate_command(
                &request(settings.clone()),
                &OriginateInputs {
                    dial_string: &DialTemplate::parse(template).unwrap(),
                    media: &PlayableMedia::default(),
                    recording: None,
                },
            )
            .unwrap();
            let (arguments, _, rest) = model::parse(&command);
            assert_eq!(rest, dialed);
            assert_eq!(arguments.len(), 3);
        }
    }

    #[test]
    fn hostile_caller_ids_stay_inside_their_values() {
        let hostile = [
            "a,b",
            "a, origination_uuid=evil",
            "x=y",
            "'",
            "O'Brien's",
            "\"quoted\"",
            "\\",
            "a\\,b",
            "a\\'b",
            "\\s",
            "two words",
            " leading and trailing ",
            "   ",
            "^^:a:b",
            "a:b:_c",
            "^^,x=y",
            "&hangup(x) XML evil",
            "'a b' c",
            "张三",
        ];
        for value in hostile {
            let mut settings = settings();
            settings.cid_name = value.into();
            settings.cid_number = value.into();
            settings.action = AfterAnswer::Playback(MediaRef::parse("/m/1.wav").unwrap());
            let media = PlayableMedia {
                confirm_prompt: None,
                playback: Some("/m/1.wav".into()),
            };
            let command = build(settings, media, None);
            let (arguments, variables, rest) = model::parse(&command);
            assert_eq!(arguments.len(), 3, "{value:?}: {command}");
            assert_eq!(arguments[0], "originate");
            assert_eq!(
                arguments[2], "&playback(${outcall_playback})",
                "{value:?}: {command}"
            );
            assert_eq!(rest, "loopback/1000/context-1", "{value:?}: {command}");
            let names: Vec<&str> = variables.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "origination_uuid",
                    "originate_timeout",
                    "origination_caller_id_number",
                    "origination_caller_id_name",
                    "ignore_early_media",
                    "outcall_playback"
                ],
                "{value:?}: {command}"
            );
            assert_eq!(
                variable(&variables, "origination_caller_id_name"),
                Some(value),
                "{command}"
            );
            assert_eq!(
                variable(&variables, "origination_caller_id_number"),
                Some(value),
                "{command}"
            );
            assert!(!command.contains('\n'));
        }
    }

    #[test]
    fn hostile_paths_stay_inside_their_arguments() {
        for path in [
            "/m/with space.wav",
            "/m/it's.wav",
            "/m/a,b.wav",
            "/m/back\\slash.wav",
            "/m/paren).wav",
            "tone_stream://%(300,0,440);%(300,0,660)",
        ] {
            let mut settings = settings();
            settings.confirm = Some(Confirm {
                key: "1".into(),
                timeout: Duration::from_secs(5),
                prompt: MediaRef::parse(path),
            });
            settings.action = AfterAnswer::Playback(MediaRef::parse(path).unwrap());
            let media = PlayableMedia {
                confirm_prompt: Some(path.into()),
                playback: Some(path.into()),
            };
            let command = build(settings, media, None);
            let (arguments, variables, _) = model::parse(&command);
            assert_eq!(arguments.len(), 3, "{command}");
            assert_eq!(arguments[2], "&playback(${outcall_playback})", "{command}");
            assert_eq!(variable(&variables, "group_confirm_file"), Some(path));
            assert_eq!(variable(&variables, PLAYBACK_VARIABLE), Some(path));
            assert_eq!(variables.len(), 8, "{command}");
        }
    }

    #[test]
    fn what_cannot_be_escaped_is_refused_naming_the_field() {
        let refused = |change: &dyn Fn(&mut CallSettings), field: &str| {
            let mut settings = settings();
            change(&mut settings);
            let error = check_settings(&settings, &template()).unwrap_err();
            assert!(error.contains(field), "{error}");
        };
        for value in [
            "}{x=y}",
            "a{b",
            "a}b",
            "line\nbreak",
            "bell\u{7}",
            "${uuid}",
            "a:_:b",
            ":_:",
        ] {
            refused(&|s| s.cid_name = value.into(), "cid_name");
            refused(&|s| s.cid_number = value.into(), "cid_number");
        }
        for context in ["", "a b", "a,b", "ctx/evil", "c\nd", "'c'"] {
            refused(&|s| s.dest_context = context.into(), "dest_context");
        }
        for extension in ["a b", "&hangup(x)", "8001 XML evil", "1'0", "1\\0", "1\n"] {
            refused(
                &|s| s.action = AfterAnswer::Transfer(extension.into()),
                "transfer extension",
            );
        }
        refused(
            &|s| {
                s.confirm = Some(Confirm {
                    key: "1}".into(),
                    timeout: Duration::from_secs(5),
                    prompt: None,
                })
            },
            "group_confirm_key",
        );
    }

    #[test]
    fn a_number_that_cannot_be_dialed_is_refused() {
        for number in ["10,00", "1 0", "1/0", "1|0", "{a=b}1", "1\n0", "1'"] {
            let mut request = request(settings());
            request.dest_number = number.into();
            let error = originate_command(
                &request,
                &OriginateInputs {
                    dial_string: &template(),
                    media: &PlayableMedia::default(),
                    recording: None,
                },
            )
            .unwrap_err();
            assert!(error.starts_with("number"), "{error}");
        }
    }

    #[test]
    fn paths_freeswitch_would_misread_are_refused() {
        for path in ["/m/${x}.wav", "/m/{a}.wav", "/m/a\nb.wav"] {
            assert!(
                check_variable("data", path, Expanded::Yes).is_err(),
                "{path}"
            );
        }
        for path in ["/data dir/r", "/d/'r", "/d/a+b", "/d/$x", "/d/\\x"] {
            assert!(check_record_path(Path::new(path)).is_err(), "{path}");
        }
        assert_eq!(check_record_path(Path::new("/d/r/u.wav")), Ok("/d/r/u.wav"));
    }

    #[test]
    fn the_model_reads_freeswitch_syntax_as_documented() {
        // Sanity of the model itself on hand-written FreeSWITCH syntax.
        let (arguments, variables, rest) =
            model::parse("originate {a=b,c='d e',f=g\\,h,i=j=k}sofia/gateway/gw/1 &park()");
        assert_eq!(arguments[2], "&park()");
        assert_eq!(rest, "sofia/gateway/gw/1");
        assert_eq!(
            variables,
            [
                ("a".to_string(), "b".to_string()),
                ("c".into(), "d e".into()),
                ("f".into(), "g,h".into()),
                ("i".into(), "j=k".into()),
            ]
        );
    }
}
