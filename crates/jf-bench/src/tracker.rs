//! One watch per batch that stamps the moment each object is first seen Ready and the moment
//! it is gone. Latencies are measured from those stamps, taken as the events arrive, so how
//! often a waiter looks at them does not matter; no object is polled.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt as _;
use jf_api::conditions;
use jf_api::{Environment, PostgreSQL};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::progress;

/// How long the first list of a watch may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a waiter prints how far a batch has got.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// A kind whose readiness the benchmark waits for.
pub trait Tracked:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Whether its `Ready` condition is `True` for its current generation.
    fn ready(&self) -> bool;
}

impl Tracked for Environment {
    fn ready(&self) -> bool {
        self.status.as_ref().is_some_and(|status| {
            conditions::is_ready(&status.conditions, self.metadata.generation)
        })
    }
}

impl Tracked for PostgreSQL {
    fn ready(&self) -> bool {
        self.status.as_ref().is_some_and(|status| {
            conditions::is_ready(&status.conditions, self.metadata.generation)
        })
    }
}

/// Namespaces are tracked to tell the namespace's deletion from the Environment's; a
/// namespace that exists counts as ready.
impl Tracked for Namespace {
    fn ready(&self) -> bool {
        true
    }
}

/// What the watch saw of one object.
#[derive(Debug, Clone)]
pub struct Seen<K> {
    pub ready: Option<Instant>,
    pub gone: Option<Instant>,
    /// The latest version seen.
    pub object: Option<Arc<K>>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Self {
            ready: None,
            gone: None,
            object: None,
        }
    }
}

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Ready,
    Gone,
}

struct State<K> {
    seen: HashMap<String, Seen<K>>,
    /// The keys of the list under way, to find what vanished while the watch was broken.
    listing: HashSet<String>,
    synced: bool,
}

/// A watch on the objects of one label selector.
pub struct Tracker<K> {
    state: Arc<Mutex<State<K>>>,
    task: JoinHandle<()>,
}

/// The key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key<K: Resource>(object: &K) -> String {
    match object.meta().namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

impl<K: Tracked> Tracker<K> {
    /// Starts watching the objects of `api` labelled `selector`, and returns once the watch
    /// has listed them, so that nothing created afterwards is missed.
    pub async fn start(api: Api<K>, selector: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            seen: HashMap::new(),
            listing: HashSet::new(),
            synced: false,
        }));
        let events = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
        let recorded = state.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if let Ok(event) = event {
                    record(&mut lock(&recorded), event, Instant::now());
                }
            }
        });
        let tracker = Self { state, task };
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while !lock(&tracker.state).synced {
            if Instant::now() > deadline {
                bail!(
                    "the watch on {} did not list within {SYNC_TIMEOUT:?}",
                    K::plural(&())
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(tracker)
    }

    /// What the watch saw of `key`.
    pub fn seen(&self, key: &str) -> Seen<K> {
        lock(&self.state).seen.get(key).cloned().unwrap_or_default()
    }

    /// Waits until every one of `keys` is ready (or gone), for at most `timeout`, printing
    /// progress as `label`. Returns the moment of each that got there; those missing took
    /// longer than `timeout`.
    pub async fn wait(
        &self,
        keys: &[String],
        until: Until,
        timeout: Duration,
        label: &str,
    ) -> HashMap<String, Instant> {
        let started = Instant::now();
        let mut reported = Instant::now();
        loop {
            let done = self.count(keys, until);
            if done == keys.len() {
                return self.reached(keys, until);
            }
            if started.elapsed() > timeout {
                progress::info(&format!(
                    "{label}: only {done}/{} after {timeout:?}; the rest count as missing",
                    keys.len()
                ));
                return self.reached(keys, until);
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                progress::info(&format!("{label}: {done}/{}", keys.len()));
                reported = Instant::now();
            }
            // Only how soon the waiter notices; the stamps are taken as events arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The moment each of `keys` got there, for those that did.
    pub fn reached(&self, keys: &[String], until: Until) -> HashMap<String, Instant> {
        let state = lock(&self.state);
        keys.iter()
            .filter_map(|key| Some((key.clone(), stamp(state.seen.get(key)?, until)?)))
            .collect()
    }

    fn count(&self, keys: &[String], until: Until) -> usize {
        let state = lock(&self.state);
        keys.iter()
            .filter(|key| {
                state
                    .seen
                    .get(key.as_str())
                    .and_then(|seen| stamp(seen, until))
                    .is_some()
            })
            .count()
    }
}

fn stamp<K>(seen: &Seen<K>, until: Until) -> Option<Instant> {
    match until {
        Until::Ready => seen.ready,
        Until::Gone => seen.gone,
    }
}

impl<K> Drop for Tracker<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<K>(state: &Mutex<State<K>>) -> MutexGuard<'_, State<K>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record<K: Tracked>(state: &mut State<K>, event: watcher::Event<K>, now: Instant) {
    match event {
        watcher::Event::Init => state.listing.clear(),
        watcher::Event::InitApply(object) => {
            state.listing.insert(key(&object));
            applied(state, object, now);
        }
        watcher::Event::Apply(object) => applied(state, object, now),
        watcher::Event::Delete(object) => {
            let seen = state.seen.entry(key(&object)).or_default();
            seen.gone.get_or_insert(now);
        }
        watcher::Event::InitDone => {
            // After a broken watch, what the new list lacks was deleted meanwhile.
            if state.synced {
                let listing = std::mem::take(&mut state.listing);
                for (key, seen) in &mut state.seen {
                    if !listing.contains(key) {
                        seen.gone.get_or_insert(now);
                    }
                }
            }
            state.synced = true;
        }
    }
}

fn applied<K: Tracked>(state: &mut State<K>, object: K, now: Instant) {
    let ready = object.ready();
    let seen = state.seen.entry(key(&object)).or_default();
    if ready {
        seen.ready.get_or_insert(now);
    }
    seen.object = Some(Arc::new(object));
}
