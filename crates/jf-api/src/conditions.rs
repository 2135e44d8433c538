//! Conditions in the standard `metav1.Condition` shape. Every kind has a `Ready` condition
//! whose `reason` is a CamelCase word for machines and whose `message` is a sentence a person
//! can act on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition every kind has.
pub const READY: &str = "Ready";

/// A condition with `status` "True" or "False" observed at `generation`, dated now.
pub fn condition(
    type_: &str,
    ready: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ready { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// Puts `new` in `conditions`, replacing the one of the same type. The transition time is
/// kept when the status did not change, so that a condition says since when it holds.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|old| old.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of `type_`, if there is one.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// Whether the `Ready` condition is true and was observed at `generation`.
pub fn is_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    find(conditions, READY).is_some_and(|condition| {
        condition.status == "True"
            && (generation.is_none() || condition.observed_generation >= generation)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_transition_time_while_the_status_holds() {
        let mut conditions = Vec::new();
        let mut first = condition(READY, false, "Pending", "creating", Some(1));
        first.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        set(&mut conditions, first);
        set(
            &mut conditions,
            condition(READY, false, "Still", "still creating", Some(2)),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(conditions[0].reason, "Still");
        assert!(!is_ready(&conditions, Some(2)));

        set(
            &mut conditions,
            condition(READY, true, "Ready", "ready", Some(2)),
        );
        assert_ne!(
            conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert!(is_ready(&conditions, Some(2)));
        assert!(!is_ready(&conditions, Some(3)));
    }
}
