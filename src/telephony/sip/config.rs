//! Settings of the SIP back end.

use std::{net::SocketAddr, time::Duration};

/// How a trunk is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
}

/// A SIP trunk or PBX that calls are sent through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// The `dest_context` that selects this trunk; `None` for the default trunk.
    pub context: Option<String>,
    pub transport: SipTransport,
    /// `host:port`, as it goes into Request-URIs.
    pub host_port: String,
}

impl Trunk {
    /// `[context=][udp:|tcp:]host[:port]`, e.g. `127.0.0.1:5080`, `pstn=tcp:10.0.0.2:5060`.
    pub fn parse(text: &str) -> Result<Trunk, String> {
        let text = text.trim();
        let (context, rest) = match text.split_once('=') {
            Some((context, rest)) if !context.trim().is_empty() => {
                (Some(context.trim().to_owned()), rest.trim())
            }
            Some(_) => return Err(format!("trunk {text:?} has an empty context before '='")),
            None => (None, text),
        };
        let (transport, address) = match rest.split_once(':') {
            Some(("udp", address)) => (SipTransport::Udp, address),
            Some(("tcp", address)) => (SipTransport::Tcp, address),
            _ => (SipTransport::Udp, rest),
        };
        if address.is_empty() || address.contains(char::is_whitespace) || address.contains('@') {
            return Err(format!(
                "trunk {text:?} is not of the form [context=][udp:|tcp:]host[:port]"
            ));
        }
        let host_port = match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => {
                port.parse::<u16>()
                    .map_err(|_| format!("trunk {text:?} has a bad port {port:?}"))?;
                address.to_owned()
            }
            Some(_) => return Err(format!("trunk {text:?} has no host")),
            None => format!("{address}:5060"),
        };
        Ok(Trunk {
            context,
            transport,
            host_port,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Local address the SIP user agent binds (UDP, and TCP for TCP trunks).
    pub bind: SocketAddr,
    /// The first trunk without a context is the default.
    pub trunks: Vec<Trunk>,
    /// `user@domain` of the From header; the user is replaced by the task's `cid_number` when set.
    pub from: String,
    /// Digest credentials answering 401 / 407 challenges.
    pub username: Option<String>,
    pub password: Option<String>,
    /// REGISTER with the default trunk and keep the registration refreshed.
    pub register: bool,
    /// Even/odd RTP port pairs are taken from this range.
    pub rtp_ports: (u16, u16),
    /// Symmetric RTP: before the callee's first packet, one from another port of the IP its SDP
    /// gave becomes the address we send to (a callee behind NAT). Off, RTP is taken only from
    /// the SDP's address and port.
    pub symmetric_rtp: bool,
    /// How a number becomes a Request-URI: `{number}` and `{trunk}` (host:port) are replaced.
    pub request_uri: String,
    /// A call still up after this long is hung up (a callee that never sends BYE).
    pub max_call_duration: Duration,
}

pub const DEFAULT_REQUEST_URI: &str = "sip:{number}@{trunk}";

impl SipConfig {
    /// The trunk for a task's `dest_context`: the one named so, else the default.
    pub fn trunk_for(&self, dest_context: &str) -> Option<&Trunk> {
        self.trunks
            .iter()
            .find(|t| t.context.as_deref() == Some(dest_context))
            .or_else(|| self.trunks.iter().find(|t| t.context.is_none()))
            .or_else(|| self.trunks.first())
    }

    pub fn request_uri(&self, number: &str, trunk: &Trunk) -> String {
        self.request_uri
            .replace("{number}", number)
            .replace("{trunk}", &trunk.host_port)
    }
}

/// `low-high`, both even-aligned inside 1024–65535.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("RTP ports {text:?} are not of the form low-high"))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("RTP port {p:?} is not a port number"))
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low < 1024 || high <= low || high - low < 2 {
        return Err(format!(
            "RTP ports {text:?}: need 1024 <= low < high with room for at least one pair"
        ));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunks() {
        assert_eq!(
            Trunk::parse("127.0.0.1:5080").unwrap(),
            Trunk {
                context: None,
                transport: SipTransport::Udp,
                host_port: "127.0.0.1:5080".into()
            }
        );
        assert_eq!(
            Trunk::parse("pstn=tcp:pbx.example.com").unwrap(),
            Trunk {
                context: Some("pstn".into()),
                transport: SipTransport::Tcp,
                host_port: "pbx.example.com:5060".into()
            }
        );
        for bad in [
            "",
            "=1.2.3.4",
            "1.2.3.4:port",
            ":5060",
            "a b:1",
            "user@host:5060",
        ] {
            assert!(Trunk::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trunk_choice_and_request_uri() {
        let config = SipConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            trunks: vec![
                Trunk::parse("10.0.0.1:5060").unwrap(),
                Trunk::parse("ctx2=10.0.0.2:5070").unwrap(),
            ],
            from: "outcall@example.com".into(),
            username: None,
            password: None,
            register: false,
            rtp_ports: (20000, 20100),
            symmetric_rtp: false,
            request_uri: DEFAULT_REQUEST_URI.into(),
            max_call_duration: Duration::from_secs(60),
        };
        assert_eq!(config.trunk_for("ctx2").unwrap().host_port, "10.0.0.2:5070");
        assert_eq!(
            config.trunk_for("context-1").unwrap().host_port,
            "10.0.0.1:5060"
        );
        assert_eq!(
            config.request_uri("1000", config.trunk_for("").unwrap()),
            "sip:1000@10.0.0.1:5060"
        );
        assert_eq!(parse_port_range("20000-20100"), Ok((20000, 20100)));
        assert!(parse_port_range("20000").is_err());
        assert!(parse_port_range("30000-20000").is_err());
    }
}
