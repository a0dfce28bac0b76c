//! Classifies rdkafka errors into [`mq_core::Error`] (transient or permanent).

use mq_core::{Error, Retry};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Maps an rdkafka error to the messaging layer's error, deciding whether a retry can help.
pub fn classify(operation: &str, error: KafkaError) -> Error {
    use RDKafkaErrorCode as C;
    let message = format!("kafka {operation}: {error}");
    match &error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => {
            return Error::backend(message, Retry::Permanent, error)
        }
        KafkaError::Canceled => return Error::unavailable(message, error),
        _ => {}
    }
    let code = match &error {
        // rdkafka does not report the code of admin operations through `rdkafka_error_code`.
        KafkaError::AdminOp(code) => Some(*code),
        _ => error.rdkafka_error_code(),
    };
    let Some(code) = code else {
        return Error::backend(message, Retry::Transient, error);
    };
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidTopic
        | C::InvalidRequiredAcks
        | C::PolicyViolation => Error::Rejected(message),
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::InvalidArgument
        | C::InvalidConfig
        | C::UnsupportedFeature
        | C::UnsupportedVersion
        | C::Fatal
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::UnsupportedCompressionType => Error::backend(message, Retry::Permanent, error),
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => {
            Error::backend(message, Retry::Transient, error)
        }
        // Transport failures, leader elections, coordinator moves, a full local queue, an
        // unknown topic that is still being created: all pass.
        _ => Error::unavailable(message, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_and_leadership_errors_are_transient() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            let error = classify("publish", KafkaError::MessageProduction(code));
            assert!(error.is_transient(), "{code:?}: {error}");
        }
    }

    #[test]
    fn invalid_messages_and_auth_errors_are_permanent() {
        let too_large = classify(
            "publish",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(matches!(too_large, Error::Rejected(_)), "{too_large}");
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidConfig,
        ] {
            assert!(!classify("admin", KafkaError::AdminOp(code)).is_transient());
        }
        assert!(!classify("create", KafkaError::ClientCreation("bad".into())).is_transient());
    }
}
