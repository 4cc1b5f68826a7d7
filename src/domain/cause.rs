//! Hangup causes: FreeSWITCH's names (its `switch_call_cause_t` table, Q.850 and its own), so that
//! results read the same whichever back end placed the call.

use strum::{EnumString, IntoStaticStr, VariantArray, VariantNames};

/// Why a call ended. Closed: a back end maps whatever it sees onto one of these.
#[allow(non_camel_case_types)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray, VariantNames,
)]
pub enum HangupCause {
    UNSPECIFIED,
    UNALLOCATED_NUMBER,
    NO_ROUTE_TRANSIT_NET,
    NO_ROUTE_DESTINATION,
    CHANNEL_UNACCEPTABLE,
    CALL_AWARDED_DELIVERED,
    NORMAL_CLEARING,
    USER_BUSY,
    NO_USER_RESPONSE,
    NO_ANSWER,
    SUBSCRIBER_ABSENT,
    CALL_REJECTED,
    NUMBER_CHANGED,
    REDIRECTION_TO_NEW_DESTINATION,
    EXCHANGE_ROUTING_ERROR,
    DESTINATION_OUT_OF_ORDER,
    INVALID_NUMBER_FORMAT,
    FACILITY_REJECTED,
    RESPONSE_TO_STATUS_ENQUIRY,
    NORMAL_UNSPECIFIED,
    NORMAL_CIRCUIT_CONGESTION,
    NETWORK_OUT_OF_ORDER,
    NORMAL_TEMPORARY_FAILURE,
    SWITCH_CONGESTION,
    ACCESS_INFO_DISCARDED,
    REQUESTED_CHAN_UNAVAIL,
    PRE_EMPTED,
    FACILITY_NOT_SUBSCRIBED,
    OUTGOING_CALL_BARRED,
    INCOMING_CALL_BARRED,
    BEARERCAPABILITY_NOTAUTH,
    BEARERCAPABILITY_NOTAVAIL,
    SERVICE_UNAVAILABLE,
    BEARERCAPABILITY_NOTIMPL,
    CHAN_NOT_IMPLEMENTED,
    FACILITY_NOT_IMPLEMENTED,
    SERVICE_NOT_IMPLEMENTED,
    INVALID_CALL_REFERENCE,
    INCOMPATIBLE_DESTINATION,
    INVALID_MSG_UNSPECIFIED,
    MANDATORY_IE_MISSING,
    MESSAGE_TYPE_NONEXIST,
    WRONG_MESSAGE,
    IE_NONEXIST,
    INVALID_IE_CONTENTS,
    WRONG_CALL_STATE,
    RECOVERY_ON_TIMER_EXPIRE,
    MANDATORY_IE_LENGTH_ERROR,
    PROTOCOL_ERROR,
    INTERWORKING,
    SUCCESS,
    ORIGINATOR_CANCEL,
    CRASH,
    SYSTEM_SHUTDOWN,
    LOSE_RACE,
    MANAGER_REQUEST,
    BLIND_TRANSFER,
    ATTENDED_TRANSFER,
    ALLOTTED_TIMEOUT,
    USER_CHALLENGE,
    MEDIA_TIMEOUT,
    PICKED_OFF,
    USER_NOT_REGISTERED,
    PROGRESS_TIMEOUT,
    GATEWAY_DOWN,
    /// outcall's own: the number is on the do-not-call list, so it was not dialed.
    DNC,
}

impl HangupCause {
    /// The name stored and shown, e.g. `USER_BUSY`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for HangupCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_reads_back_from_its_name() {
        for cause in <HangupCause as VariantArray>::VARIANTS {
            assert_eq!(cause.as_str().parse::<HangupCause>(), Ok(*cause));
        }
        assert_eq!(HangupCause::USER_BUSY.as_str(), "USER_BUSY");
        assert!("user_busy".parse::<HangupCause>().is_err());
    }
}
