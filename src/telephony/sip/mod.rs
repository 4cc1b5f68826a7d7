//! The SIP back end: signalling on rsipstack, media (RTP, G.711, RFC 4733) written here.

mod backend;
mod call_media;
pub mod causes;
pub mod config;
mod guard;
pub mod media;

pub use backend::SipBackend;
