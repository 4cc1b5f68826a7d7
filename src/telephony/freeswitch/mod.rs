//! The freeswitch back end: drives a FreeSWITCH over its inbound event socket (client in
//! [`crate::telephony::esl`]). Each call is one `bgapi originate` (built in [`originate`]) whose
//! results come from the switch's events.

pub mod config;
pub mod originate;
