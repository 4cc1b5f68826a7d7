//! SIP final responses as FreeSWITCH hangup causes, mapped the way FreeSWITCH maps them
//! (`sofia_glue_sip_cause_to_freeswitch`), so results read the same whichever back end placed them.

use crate::telephony::HangupCause;

/// The cause FreeSWITCH gives a call that ended with this SIP final response.
pub fn cause_of_sip_status(code: u16) -> HangupCause {
    match code {
        200 => HangupCause::NORMAL_CLEARING,
        401 | 402 | 403 | 407 | 603 => HangupCause::CALL_REJECTED,
        404 => HangupCause::UNALLOCATED_NUMBER,
        485 | 604 => HangupCause::NO_ROUTE_DESTINATION,
        408 | 504 => HangupCause::RECOVERY_ON_TIMER_EXPIRE,
        410 => HangupCause::NUMBER_CHANGED,
        413 | 414 | 416 | 420 | 421 | 423 | 505 | 513 => HangupCause::INTERWORKING,
        480 => HangupCause::NO_USER_RESPONSE,
        400 | 481 | 500 | 503 => HangupCause::NORMAL_TEMPORARY_FAILURE,
        486 | 600 => HangupCause::USER_BUSY,
        484 => HangupCause::INVALID_NUMBER_FORMAT,
        488 | 606 => HangupCause::INCOMPATIBLE_DESTINATION,
        502 => HangupCause::NETWORK_OUT_OF_ORDER,
        405 => HangupCause::SERVICE_UNAVAILABLE,
        406 | 415 | 501 => HangupCause::SERVICE_NOT_IMPLEMENTED,
        482 | 483 => HangupCause::EXCHANGE_ROUTING_ERROR,
        487 => HangupCause::ORIGINATOR_CANCEL,
        // FreeSWITCH's default for any other code.
        _ => HangupCause::NORMAL_UNSPECIFIED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_the_issue_names() {
        for (code, cause) in [
            (486, "USER_BUSY"),
            (480, "NO_USER_RESPONSE"),
            (603, "CALL_REJECTED"),
            (404, "UNALLOCATED_NUMBER"),
            (408, "RECOVERY_ON_TIMER_EXPIRE"),
            (503, "NORMAL_TEMPORARY_FAILURE"),
            (200, "NORMAL_CLEARING"),
            (488, "INCOMPATIBLE_DESTINATION"),
            (599, "NORMAL_UNSPECIFIED"),
        ] {
            assert_eq!(cause_of_sip_status(code).as_str(), cause, "{code}");
        }
    }
}
