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

/// How the INVITE of a call ended, as far as the call's cause goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingResult {
    /// A 2xx final response.
    Answered,
    /// A final response other than 2xx.
    Final(u16),
    /// The INVITE transaction gave up without a final response (a local 408).
    TimedOut,
    /// We stopped waiting without a final response: the ring timeout or the dialer's hang-up
    /// came before anything was heard back, or nothing answered our CANCEL in time.
    NoResponse,
    /// The INVITE could not be sent, or its transaction failed.
    TransportError,
}

/// The cause and SIP code of a call that ended while ringing, or that was answered as we gave it
/// up. `our_cause` is the cause we gave up ringing with (the ring timeout's `NO_ANSWER`, or the
/// dialer's hang-up), which a call keeps whatever the far end answers to our CANCEL;
/// `heard_back` tells whether anything, even a 100 Trying, came back for the INVITE.
///
/// A 2xx without `our_cause` is a call that goes on (its talk decides its cause): this answers
/// `NORMAL_CLEARING` for it.
pub fn ring_outcome(
    result: RingResult,
    our_cause: Option<HangupCause>,
    heard_back: bool,
) -> (HangupCause, Option<u16>) {
    match (result, our_cause) {
        (RingResult::Answered, ours) => (ours.unwrap_or(HangupCause::NORMAL_CLEARING), Some(200)),
        // The 487 that answers our CANCEL.
        (RingResult::Final(487), Some(ours)) => (ours, Some(487)),
        (RingResult::Final(code), _) => (cause_of_sip_status(code), Some(code)),
        (RingResult::TimedOut, ours) => (
            ours.unwrap_or(HangupCause::RECOVERY_ON_TIMER_EXPIRE),
            Some(408),
        ),
        // Our CANCEL went unanswered: the call ends as if it had been.
        (RingResult::NoResponse, ours) if heard_back => {
            (ours.unwrap_or(HangupCause::NO_ANSWER), Some(487))
        }
        // Nothing ever came back: the trunk is silent.
        (RingResult::NoResponse, ours) => {
            (ours.unwrap_or(HangupCause::RECOVERY_ON_TIMER_EXPIRE), None)
        }
        (RingResult::TransportError, ours) => {
            (ours.unwrap_or(HangupCause::NORMAL_TEMPORARY_FAILURE), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_ringing_ends() {
        use HangupCause as C;
        use RingResult::*;
        let ours = Some(C::ORIGINATOR_CANCEL);
        let timeout = Some(C::NO_ANSWER);
        for (result, our_cause, heard_back, cause, code) in [
            // Answered: the talk goes on, unless we had given up (the stack sends BYE).
            (Answered, None, true, C::NORMAL_CLEARING, Some(200)),
            (Answered, ours, true, C::ORIGINATOR_CANCEL, Some(200)),
            (Answered, timeout, true, C::NO_ANSWER, Some(200)),
            // The 487 after our CANCEL keeps our cause; a 487 we did not ask for is the far
            // end's.
            (Final(487), ours, true, C::ORIGINATOR_CANCEL, Some(487)),
            (Final(487), timeout, true, C::NO_ANSWER, Some(487)),
            (Final(487), None, true, C::ORIGINATOR_CANCEL, Some(487)),
            // A final failure racing our CANCEL is the far end's answer.
            (Final(486), ours, true, C::USER_BUSY, Some(486)),
            (Final(404), None, true, C::UNALLOCATED_NUMBER, Some(404)),
            (
                Final(408),
                None,
                true,
                C::RECOVERY_ON_TIMER_EXPIRE,
                Some(408),
            ),
            (Final(480), None, true, C::NO_USER_RESPONSE, Some(480)),
            (
                Final(503),
                None,
                false,
                C::NORMAL_TEMPORARY_FAILURE,
                Some(503),
            ),
            (Final(502), None, true, C::NETWORK_OUT_OF_ORDER, Some(502)),
            (Final(600), None, true, C::USER_BUSY, Some(600)),
            (Final(603), None, true, C::CALL_REJECTED, Some(603)),
            (Final(604), None, true, C::NO_ROUTE_DESTINATION, Some(604)),
            (Final(699), None, true, C::NORMAL_UNSPECIFIED, Some(699)),
            // The transaction gave up: a local 408.
            (
                TimedOut,
                None,
                false,
                C::RECOVERY_ON_TIMER_EXPIRE,
                Some(408),
            ),
            (TimedOut, None, true, C::RECOVERY_ON_TIMER_EXPIRE, Some(408)),
            (TimedOut, ours, true, C::ORIGINATOR_CANCEL, Some(408)),
            // We stopped waiting: with nothing heard back there is no code.
            (NoResponse, None, false, C::RECOVERY_ON_TIMER_EXPIRE, None),
            (NoResponse, ours, false, C::ORIGINATOR_CANCEL, None),
            (NoResponse, ours, true, C::ORIGINATOR_CANCEL, Some(487)),
            (NoResponse, timeout, true, C::NO_ANSWER, Some(487)),
            (
                TransportError,
                None,
                false,
                C::NORMAL_TEMPORARY_FAILURE,
                None,
            ),
            (TransportError, ours, true, C::ORIGINATOR_CANCEL, None),
        ] {
            assert_eq!(
                ring_outcome(result, our_cause, heard_back),
                (cause, code),
                "{result:?} ours {our_cause:?} heard back {heard_back}"
            );
        }
    }

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
