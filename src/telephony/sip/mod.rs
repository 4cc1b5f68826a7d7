//! The SIP back end: signalling on rsipstack, media (RTP, G.711, RFC 4733) written here.

pub mod causes;
pub mod config;
