//! The freeswitch back end against a scripted event socket (`common::esl_peer`) that replays
//! real FreeSWITCH 1.11.2 wire captures (`tests/fixtures/esl/`): CI has no FreeSWITCH.

mod common;

use common::esl_peer::*;

#[test]
fn captures_parse() {
    for s in Scenario::ALL {
        let _ = s.script();
    }
}
