//! STUB until i10-esl merges: the interface agreed with engineer B, so that the freeswitch back
//! end compiles before the real client lands. Replaced wholesale by B's module at merge.

use std::time::Duration;

pub struct Frame;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Event {
    pub fn from_frame(_frame: &Frame) -> Result<Event, EslError> {
        Err(EslError::Protocol("stub".into()))
    }
    pub fn name(&self) -> &str {
        self.get("Event-Name").unwrap_or_default()
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EslError {
    #[error("event socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("event socket authentication failed: {0}")]
    AuthFailed(String),
    #[error("event socket rejected the connection: {0}")]
    Rejected(String),
    #[error("event socket disconnected: {0}")]
    Disconnected(String),
    #[error("event socket protocol error: {0}")]
    Protocol(String),
    #[error("event socket command timed out")]
    Timeout,
    #[error("event socket command refused: {0}")]
    CommandFailed(String),
}

#[derive(Clone)]
pub struct EslClient;

impl EslClient {
    pub async fn connect(
        _addr: &str,
        _password: &str,
        _events: &[&str],
        _timeout: Duration,
    ) -> Result<(EslClient, EventStream), EslError> {
        Err(EslError::Protocol("stub".into()))
    }
    pub async fn api(&self, _command: &str) -> Result<String, EslError> {
        Err(EslError::Protocol("stub".into()))
    }
    pub async fn bgapi(&self, _command: &str, _job_uuid: &str) -> Result<(), EslError> {
        Err(EslError::Protocol("stub".into()))
    }
    pub fn is_connected(&self) -> bool {
        false
    }
}

pub struct EventStream;

impl EventStream {
    pub async fn next(&mut self) -> Result<Event, EslError> {
        Err(EslError::Protocol("stub".into()))
    }
}
