//! Waiting for the operator: a watch on one Environment (a field selector on its name, which
//! its users are allowed) until it reaches a goal, fails, or time runs out. A failure the
//! operator reports (phase `Failed`) ends the wait at once with its reason and message.

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt as _;
use indicatif::ProgressBar;
use jf_api::conditions::{self, READY};
use jf_api::{Environment, EnvironmentPhase};
use k8s_openapi::jiff::SignedDuration;
use kube::api::Api;
use kube::runtime::watcher::{self, watch_object};
use kube::{Client, Resource as _};

use crate::api_error::ApiError;
use crate::duration;
use crate::environments;

/// The wait flags of every command that changes something.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Return as soon as the change is made, without waiting for the operator to apply it.
    #[arg(long)]
    pub no_wait: bool,

    /// How long to wait for the operator, e.g. 90s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = duration::parse)]
    pub timeout: SignedDuration,
}

impl Default for WaitArgs {
    fn default() -> Self {
        Self {
            no_wait: false,
            timeout: SignedDuration::from_mins(2),
        }
    }
}

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Ready at this generation (or later): everything in the spec applied.
    Ready { generation: Option<i64> },
    /// Asleep at this generation: the workloads scaled to zero.
    Sleeping { generation: Option<i64> },
    /// Awake and ready at this generation.
    Awake { generation: Option<i64> },
    /// The Environment gone, its namespace deleted.
    Gone,
}

impl Goal {
    /// Ready as of the spec of `environment`, as a write returned it.
    pub fn ready(environment: &Environment) -> Self {
        Self::Ready {
            generation: environment.meta().generation,
        }
    }

    pub fn sleeping(environment: &Environment) -> Self {
        Self::Sleeping {
            generation: environment.meta().generation,
        }
    }

    pub fn awake(environment: &Environment) -> Self {
        Self::Awake {
            generation: environment.meta().generation,
        }
    }

    fn generation(self) -> Option<i64> {
        match self {
            Self::Ready { generation }
            | Self::Sleeping { generation }
            | Self::Awake { generation } => generation,
            Self::Gone => None,
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Ready { .. } => "to be ready",
            Self::Sleeping { .. } => "to sleep",
            Self::Awake { .. } => "to wake up",
            Self::Gone => "to be deleted",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("environment \"{name}\" failed: {message} ({reason})")]
    Failed {
        name: String,
        reason: String,
        message: String,
    },
    #[error("environment \"{name}\" was deleted while waiting for it {goal}")]
    Deleted { name: String, goal: Goal },
    #[error("environment \"{name}\" is being deleted")]
    Deleting { name: String },
    #[error(
        "timed out after {after} waiting for environment \"{name}\" {goal}{last}",
        after = duration::display(*.after),
        last = .last.as_deref().map(|last| format!("; last status: {last}")).unwrap_or_default()
    )]
    Timeout {
        name: String,
        goal: Goal,
        after: SignedDuration,
        /// The last status seen, as `phase, Reason: message`.
        last: Option<String>,
    },
    #[error("failed to watch environment \"{name}\"")]
    Watch {
        name: String,
        #[source]
        source: ApiError,
    },
    #[error("the watch of environment \"{name}\" ended unexpectedly")]
    WatchEnded { name: String },
    #[error("failed to watch environment \"{name}\": the API server sent no resource version")]
    NoResourceVersion { name: String },
}

impl Error {
    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Failed { name, .. } => Some(format!(
                "run `jf status {name}` for details; `jf delete env {name}` removes it"
            )),
            Self::Timeout {
                name, last: None, ..
            } => Some(format!(
                "the operator has not reported on environment \"{name}\" yet: is it running? \
                 wait longer with --timeout"
            )),
            Self::Timeout { name, .. } => Some(format!(
                "run `jf status {name}` to see its conditions, or wait longer with --timeout"
            )),
            Self::Deleted { .. } => Some("run `jf list` to see your environments".to_owned()),
            Self::Watch { name, source } if source.is_forbidden() => Some(format!(
                "only the users of environment \"{name}\" may watch it; --no-wait skips waiting"
            )),
            _ => None,
        }
    }
}

/// Where an Environment stands with respect to a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Reached,
    Waiting,
    /// It will not get there: the reason is the error to report.
    Failed(Failure),
}

/// Why an Environment will not reach a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Failed { reason: String, message: String },
    Deleted,
    Deleting,
}

/// Where `environment` (none: it does not exist) stands with respect to `goal`.
pub fn progress(goal: Goal, environment: Option<&Environment>) -> Progress {
    let Some(environment) = environment else {
        return match goal {
            Goal::Gone => Progress::Reached,
            _ => Progress::Failed(Failure::Deleted),
        };
    };
    if goal == Goal::Gone {
        return Progress::Waiting;
    }
    if environment.meta().deletion_timestamp.is_some() {
        return Progress::Failed(Failure::Deleting);
    }
    let generation = goal.generation();
    let status = environment.status.clone().unwrap_or_default();
    // What the operator says about an older spec says nothing about this one.
    if generation.is_some() && status.observed_generation < generation {
        return Progress::Waiting;
    }
    let ready = conditions::is_ready(&status.conditions, generation);
    match (goal, status.phase) {
        (_, Some(EnvironmentPhase::Failed)) => {
            let condition = conditions::find(&status.conditions, READY);
            Progress::Failed(Failure::Failed {
                reason: condition
                    .map(|condition| condition.reason.clone())
                    .unwrap_or_default(),
                message: condition
                    .map(|condition| condition.message.clone())
                    .unwrap_or_default(),
            })
        }
        (Goal::Ready { .. }, _) if ready => Progress::Reached,
        (Goal::Sleeping { .. }, Some(EnvironmentPhase::Sleeping)) if ready => Progress::Reached,
        (Goal::Awake { .. }, Some(EnvironmentPhase::Ready)) if ready => Progress::Reached,
        _ => Progress::Waiting,
    }
}

/// The last status of an Environment in a few words: `Pending, NamespaceTerminating: namespace
/// jf-x is being deleted`.
pub fn summary(environment: &Environment) -> Option<String> {
    let status = environment.status.as_ref()?;
    let phase = status.phase.map(|phase| phase.to_string());
    let condition = conditions::find(&status.conditions, READY)
        .map(|condition| format!("{}: {}", condition.reason, condition.message));
    match (phase, condition) {
        (Some(phase), Some(condition)) => Some(format!("{phase}, {condition}")),
        (phase, condition) => phase.or(condition),
    }
}

/// Waits until the Environment `name` reaches `goal`, for at most `timeout`. Returns the
/// Environment as it was then (none when the goal is [`Goal::Gone`]).
pub async fn until(
    client: &Client,
    name: &str,
    goal: Goal,
    timeout: SignedDuration,
) -> Result<Option<Environment>, Error> {
    let mut last: Option<Environment> = None;
    let watching = watch(client, name, goal, &mut last);
    match tokio::time::timeout(timeout.unsigned_abs(), watching).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Error::Timeout {
            name: name.to_owned(),
            goal,
            after: timeout,
            last: last.as_ref().and_then(summary),
        }),
    }
}

async fn watch(
    client: &Client,
    name: &str,
    goal: Goal,
    last: &mut Option<Environment>,
) -> Result<Option<Environment>, Error> {
    let mut states = pin!(follow(environments::api(client), name));
    while let Some(state) = states.next().await {
        let environment = state.map_err(|unfollowable| {
            let name = name.to_owned();
            match unfollowable {
                Unfollowable::Ended => Error::WatchEnded { name },
                Unfollowable::NoResourceVersion => Error::NoResourceVersion { name },
                Unfollowable::Failed(source) => Error::Watch { name, source },
            }
        })?;
        match progress(goal, environment.as_ref()) {
            Progress::Reached => return Ok(environment),
            Progress::Waiting => *last = environment,
            Progress::Failed(failure) => {
                let name = name.to_owned();
                return Err(match failure {
                    Failure::Failed { reason, message } => Error::Failed {
                        name,
                        reason,
                        message,
                    },
                    Failure::Deleted => Error::Deleted { name, goal },
                    Failure::Deleting => Error::Deleting { name },
                });
            }
        }
    }
    Err(Error::WatchEnded {
        name: name.to_owned(),
    })
}

/// Why following an object stopped short.
#[derive(Debug)]
pub enum Unfollowable {
    /// The watch's stream ended, which it does not; nothing more can be learned.
    Ended,
    /// The API server sent no resource version to watch from.
    NoResourceVersion,
    /// An error that retrying cannot lift (forbidden, not found…).
    Failed(ApiError),
}

/// The states of the object `name` of `api`, one after another, beginning with its current
/// one (`None`: it does not exist), since the watcher lists before it watches. Errors that may
/// pass (a dropped connection, an expired resource version) are retried with a backoff; the
/// stream ends after the first that cannot.
pub fn follow<K>(
    api: Api<K>,
    name: &str,
) -> impl futures::Stream<Item = Result<Option<K>, Unfollowable>> + Send + use<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send,
{
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    let events = watch_object(api, name).boxed();
    futures::stream::unfold(Some((events, FIRST_PAUSE)), |state| async move {
        let (mut events, mut pause) = state?;
        loop {
            let failed = match events.next().await {
                None => Unfollowable::Ended,
                Some(Ok(object)) => return Some((Ok(object), Some((events, FIRST_PAUSE)))),
                Some(Err(error)) => match api_error(error) {
                    None => Unfollowable::NoResourceVersion,
                    Some(source) if source.is_permanent() => Unfollowable::Failed(source),
                    Some(_) => {
                        // The watcher starts again on the next poll.
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            return Some((Err(failed), None));
        }
    })
}

/// The API error a watcher's error carries; none when the API server sent no resource version.
pub(crate) fn api_error(error: watcher::Error) -> Option<ApiError> {
    match error {
        watcher::Error::InitialListFailed(error)
        | watcher::Error::WatchStartFailed(error)
        | watcher::Error::WatchFailed(error) => Some(ApiError(error)),
        watcher::Error::WatchError(status) => Some(ApiError(kube::Error::Api(status))),
        watcher::Error::NoResourceVersion => None,
    }
}

/// A spinner on stderr while waiting, only when stderr is a terminal. It disappears when dropped.
#[derive(Debug)]
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn start(message: impl Into<Cow<'static, str>>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(message);
        spinner.enable_steady_tick(Duration::from_millis(100));
        Self(Some(spinner))
    }

    /// Says what is awaited now.
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        if let Some(spinner) = &self.0 {
            spinner.set_message(message);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(spinner) = &self.0 {
            spinner.finish_and_clear();
        }
    }
}

/// Waits, with a spinner saying what for, unless `--no-wait` was given.
pub async fn with_spinner(
    client: &Client,
    name: &str,
    goal: Goal,
    arguments: &WaitArgs,
) -> Result<Option<Environment>, Error> {
    if arguments.no_wait {
        return Ok(None);
    }
    let _spinner = Spinner::start(format!("Waiting for environment \"{name}\" {goal}…"));
    until(client, name, goal, arguments.timeout).await
}

#[cfg(test)]
mod tests {
    use jf_api::conditions::condition;
    use jf_api::{EnvironmentSpec, EnvironmentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn environment(generation: i64, status: Option<EnvironmentStatus>) -> Environment {
        let mut environment = Environment::new("fix-bug", EnvironmentSpec::default());
        environment.metadata.generation = Some(generation);
        environment.status = status;
        environment
    }

    fn status(
        phase: EnvironmentPhase,
        ready: bool,
        reason: &str,
        observed: i64,
    ) -> EnvironmentStatus {
        EnvironmentStatus {
            phase: Some(phase),
            conditions: vec![condition(READY, ready, reason, "a message", Some(observed))],
            observed_generation: Some(observed),
            ..EnvironmentStatus::default()
        }
    }

    #[test]
    fn ready_at_the_generation_written() {
        let goal = Goal::Ready {
            generation: Some(2),
        };
        assert_eq!(
            progress(goal, Some(&environment(2, None))),
            Progress::Waiting
        );
        let stale = environment(2, Some(status(EnvironmentPhase::Ready, true, "Ready", 1)));
        assert_eq!(progress(goal, Some(&stale)), Progress::Waiting);
        let ready = environment(2, Some(status(EnvironmentPhase::Ready, true, "Ready", 2)));
        assert_eq!(progress(goal, Some(&ready)), Progress::Reached);
        let later = environment(3, Some(status(EnvironmentPhase::Ready, true, "Ready", 3)));
        assert_eq!(progress(goal, Some(&later)), Progress::Reached);
        let pending = environment(
            2,
            Some(status(
                EnvironmentPhase::Pending,
                false,
                "NamespaceTerminating",
                2,
            )),
        );
        assert_eq!(progress(goal, Some(&pending)), Progress::Waiting);
    }

    #[test]
    fn a_failure_of_this_generation_ends_the_wait() {
        let goal = Goal::Ready {
            generation: Some(2),
        };
        let old_failure = environment(
            2,
            Some(status(EnvironmentPhase::Failed, false, "RoleNotAllowed", 1)),
        );
        assert_eq!(progress(goal, Some(&old_failure)), Progress::Waiting);
        let failure = environment(
            2,
            Some(status(EnvironmentPhase::Failed, false, "RoleNotAllowed", 2)),
        );
        assert_eq!(
            progress(goal, Some(&failure)),
            Progress::Failed(Failure::Failed {
                reason: "RoleNotAllowed".to_owned(),
                message: "a message".to_owned(),
            })
        );
        assert_eq!(progress(goal, None), Progress::Failed(Failure::Deleted));
        let mut deleting = environment(2, Some(status(EnvironmentPhase::Ready, true, "Ready", 2)));
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(
            progress(goal, Some(&deleting)),
            Progress::Failed(Failure::Deleting)
        );
    }

    #[test]
    fn sleeping_and_awake_need_their_phase() {
        let asleep = environment(
            3,
            Some(status(EnvironmentPhase::Sleeping, true, "Sleeping", 3)),
        );
        let awake = environment(3, Some(status(EnvironmentPhase::Ready, true, "Ready", 3)));
        let sleeping = Goal::Sleeping {
            generation: Some(3),
        };
        let waking = Goal::Awake {
            generation: Some(3),
        };
        assert_eq!(progress(sleeping, Some(&asleep)), Progress::Reached);
        assert_eq!(progress(sleeping, Some(&awake)), Progress::Waiting);
        assert_eq!(progress(waking, Some(&awake)), Progress::Reached);
        assert_eq!(progress(waking, Some(&asleep)), Progress::Waiting);
    }

    #[test]
    fn gone_means_no_object() {
        let terminating = environment(
            1,
            Some(status(
                EnvironmentPhase::Terminating,
                false,
                "Terminating",
                1,
            )),
        );
        assert_eq!(progress(Goal::Gone, Some(&terminating)), Progress::Waiting);
        assert_eq!(progress(Goal::Gone, None), Progress::Reached);
    }

    #[test]
    fn timeouts_say_what_was_awaited_and_what_was_seen() {
        let pending = environment(
            1,
            Some(status(
                EnvironmentPhase::Pending,
                false,
                "NamespaceTerminating",
                1,
            )),
        );
        let error = Error::Timeout {
            name: "fix-bug".to_owned(),
            goal: Goal::Ready {
                generation: Some(1),
            },
            after: SignedDuration::from_mins(2),
            last: summary(&pending),
        };
        assert_eq!(
            error.to_string(),
            "timed out after 2m waiting for environment \"fix-bug\" to be ready; \
             last status: Pending, NamespaceTerminating: a message"
        );
        let error = Error::Timeout {
            name: "fix-bug".to_owned(),
            goal: Goal::Gone,
            after: SignedDuration::from_secs(90),
            last: None,
        };
        assert_eq!(
            error.to_string(),
            "timed out after 1m30s waiting for environment \"fix-bug\" to be deleted"
        );
        assert!(error.hint().expect("a hint").contains("operator"));
    }
}
