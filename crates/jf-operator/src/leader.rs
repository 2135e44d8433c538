//! Leader election on a `coordination.k8s.io` Lease, so that two replicas are safe: only the
//! holder runs the controllers. The holder renews the Lease every third of its duration; a
//! candidate takes it over once it has seen no renewal for a whole duration, judged by its
//! own clock since it last saw the Lease change (as client-go does), so clock skew between
//! nodes does not matter. A holder that stops cleanly gives the Lease up at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt as _};

use crate::settings::LeaderElectionSettings;

/// How often a candidate looks at a Lease held by another.
const RETRY_PERIOD: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or write the Lease {namespace}/{name}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "lost the Lease {namespace}/{name}: not renewed for {after:?}{holder}",
        holder = .holder.as_deref().map(|holder| format!("; {holder} holds it now")).unwrap_or_default()
    )]
    Lost {
        namespace: String,
        name: String,
        after: Duration,
        holder: Option<String>,
    },
}

/// What this process knows of the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ours: take it, or renew it.
    Take,
    /// Another holds it and renewed it within the duration.
    Wait { holder: String },
}

/// Whether this candidate (`identity`) may take or renew `lease`, which it has seen unchanged
/// for `unchanged_for`.
pub fn decide(lease: &Lease, identity: &str, unchanged_for: Duration) -> Decision {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return Decision::Take;
    }
    let duration = Duration::from_secs(
        spec.lease_duration_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .unwrap_or(15),
    );
    if unchanged_for > duration {
        Decision::Take
    } else {
        Decision::Wait { holder }
    }
}

/// The Lease as its holder `identity` writes it, from `current` (if any).
pub fn held_by(
    current: Option<&Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        spec.holder_identity = Some(identity.to_owned());
        spec.acquire_time = Some(MicroTime(now));
        if current.is_some() {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
    }
    spec.lease_duration_seconds = Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX));
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// One process's part in the election.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease's resource version when this process last saw it change, and when.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, settings: &LeaderElectionSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            namespace: settings.namespace.clone(),
            name: settings.id.clone(),
            identity: settings.identity(),
            duration: settings.lease_duration,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn error(&self, source: kube::Error) -> Error {
        Error::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// One round: takes or renews the Lease if this process may. Returns whether it holds it,
    /// and otherwise who does.
    pub async fn try_hold(&mut self) -> Result<Result<(), String>, Error> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        let unchanged_for = match (&current, &self.observed) {
            (Some(lease), Some((version, since)))
                if lease.resource_version().as_ref() == Some(version) =>
            {
                since.elapsed()
            }
            (Some(lease), _) => {
                self.observed =
                    Some((lease.resource_version().unwrap_or_default(), Instant::now()));
                Duration::ZERO
            }
            (None, _) => Duration::ZERO,
        };
        if let Some(lease) = &current
            && let Decision::Wait { holder } = decide(lease, &self.identity, unchanged_for)
        {
            return Ok(Err(holder));
        }
        let lease = held_by(
            current.as_ref(),
            &self.name,
            &self.identity,
            self.duration,
            Timestamp::now(),
        );
        // Both carry the resource version read (or none): a write by anyone else in between is
        // a conflict, and this round is lost.
        let written = match &current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                self.observed =
                    Some((lease.resource_version().unwrap_or_default(), Instant::now()));
                Ok(Ok(()))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Err("another candidate".to_owned()))
            }
            Err(error) => Err(self.error(error)),
        }
    }

    /// Waits until this process holds the Lease.
    pub async fn acquire(&mut self) -> Result<(), Error> {
        let mut waiting_for = None;
        loop {
            match self.try_hold().await {
                Ok(Ok(())) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return Ok(());
                }
                Ok(Err(holder)) => {
                    if waiting_for.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.name, %holder, "waiting to become the leader");
                        waiting_for = Some(holder);
                    }
                }
                // The API server may be briefly away; the next round tries again.
                Err(error) => tracing::warn!(error = %error, "leader election failed, retrying"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renews the Lease every third of its duration. Returns when it is lost: another took it,
    /// or no renewal succeeded for a whole duration, after which another may have.
    pub async fn keep(&mut self) -> Error {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            // A renewal the API server does not answer in time counts as failed: the leader
            // must stop on its own clock, whatever its requests are waiting for.
            let attempt = tokio::time::timeout(self.duration / 3, self.try_hold()).await;
            let attempt = attempt.unwrap_or_else(|_| {
                Err(Error::Api {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    source: kube::Error::Service(
                        format!("no answer within {:?}", self.duration / 3).into(),
                    ),
                })
            });
            match attempt {
                Ok(Ok(())) => renewed = Instant::now(),
                Ok(Err(holder)) => {
                    return Error::Lost {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        after: renewed.elapsed(),
                        holder: Some(holder),
                    };
                }
                Err(error) => {
                    tracing::warn!(error = %error, "failed to renew the Lease");
                    // Stop before another may take over: a little under a whole duration.
                    if renewed.elapsed() + self.duration / 3 >= self.duration {
                        return Error::Lost {
                            namespace: self.namespace.clone(),
                            name: self.name.clone(),
                            after: renewed.elapsed(),
                            holder: None,
                        };
                    }
                }
            }
        }
    }

    /// Gives the Lease up, so that another replica takes over at once. A write that conflicts
    /// (the Lease changed meanwhile) is tried again on the Lease as it is then.
    pub async fn release(&mut self) {
        for _ in 0..3 {
            let mut lease = match self.api.get_opt(&self.name).await {
                Ok(Some(lease)) => lease,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(error = %error, "failed to release the Lease");
                    return;
                }
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return;
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    tracing::info!(lease = %self.name, "released the Lease");
                    return;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => {
                    tracing::warn!(error = %error, "failed to release the Lease");
                    return;
                }
            }
        }
        tracing::warn!("failed to release the Lease: it kept changing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("jango-fett-operator".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_held_by_another_is_taken_only_once_it_went_unrenewed_for_its_duration() {
        let held = lease(Some("b"), 15);
        assert_eq!(
            decide(&held, "a", Duration::from_secs(14)),
            Decision::Wait {
                holder: "b".to_owned()
            }
        );
        assert_eq!(decide(&held, "a", Duration::from_secs(16)), Decision::Take);
        assert_eq!(
            decide(&held, "b", Duration::ZERO),
            Decision::Take,
            "its holder renews"
        );
        assert_eq!(
            decide(&lease(None, 1), "a", Duration::ZERO),
            Decision::Take,
            "released"
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().expect("a time");
        let later: Timestamp = "2026-11-23T10:00:05Z".parse().expect("a time");
        let created = held_by(None, "l", "a", Duration::from_secs(15), now);
        let spec = created.spec.clone().expect("a spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, None);
        assert_eq!(spec.lease_duration_seconds, Some(15));

        let renewed = held_by(Some(&created), "l", "a", Duration::from_secs(15), later);
        let renewed_spec = renewed.spec.clone().expect("a spec");
        assert_eq!(renewed_spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(renewed_spec.renew_time, Some(MicroTime(later)));
        assert_eq!(renewed_spec.lease_transitions, None);

        let taken = held_by(Some(&renewed), "l", "b", Duration::from_secs(15), later);
        let taken_spec = taken.spec.expect("a spec");
        assert_eq!(taken_spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken_spec.acquire_time, Some(MicroTime(later)));
        assert_eq!(taken_spec.lease_transitions, Some(1));
    }
}
