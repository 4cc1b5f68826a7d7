//! outcall: an outbound auto-dialer appliance speaking XSwitch's `/api/out_call_tasks` REST API.

pub mod api;
pub mod audio;
pub mod auth;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod db;
pub mod dialer;
pub mod domain;
pub mod metrics;
pub mod resources;
pub mod startup;
pub mod telephony;
mod web_assets;
pub mod webhooks;
pub mod xlsx;
