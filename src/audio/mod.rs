//! Audio that any telephony back end or the media store handles: WAV files in and out
//! ([`wav`]), G.711 companding ([`g711`]) and sample-rate conversion ([`resample`]).
//!
//! Prompts are turned into 8 kHz mono 16-bit samples, what a G.711 call carries.

pub mod g711;
pub mod resample;
pub mod wav;

pub use g711::G711;
pub use wav::{normalize_wav, prompt_from_wav, PromptError};
