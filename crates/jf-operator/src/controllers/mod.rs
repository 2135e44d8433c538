//! The controllers, one module per kind, and what they share: server-side apply that makes
//! no write when the object is already as desired, and label-selected caches of children.

pub mod app;
pub mod blueprint;
pub mod environment;
pub mod packed;
pub mod postgresql;
pub mod redis;
pub mod secrets;
pub mod written;

use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, TryStreamExt as _};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use packed::{Packed, Packer};

/// On every applied object: a hash of what was applied. When the desired object changes, so
/// does the hash, which makes the cached copy differ and the change be applied, including the
/// removal of fields no longer desired.
pub const APPLIED_HASH_ANNOTATION: &str = "jango-fett.dev/applied-hash";

/// The recorder of the operator's Events, naming this replica (the install sets `POD_NAME`).
pub fn recorder(client: Client) -> kube::runtime::events::Recorder {
    kube::runtime::events::Recorder::new(
        client,
        kube::runtime::events::Reporter {
            controller: "jango-fett-operator".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Server-side applies `status` as the status of `object`, unless `current` is the same
/// already. Returns whether it wrote.
pub async fn apply_status<K, S>(
    client: &Client,
    object: &K,
    current: Option<&S>,
    status: &S,
    manager: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()>,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let request = kube::core::Request::new(K::url_path(&(), object.meta().namespace.as_deref()))
        .patch_subresource(
            "status",
            &object.name_any(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .map_err(kube::Error::BuildRequest)?;
    client.request::<Value>(request).await?;
    Ok(true)
}

/// Logs one outcome of a controller's run. A failed reconciliation was logged with its reason
/// by the error policy already; an object deleted a moment before its turn is nothing to do.
pub async fn log_outcome<K, E>(
    controller: &'static str,
    result: Result<
        (ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E, watcher::Error>,
    >,
) where
    K: Resource,
    E: std::error::Error + 'static,
{
    match result {
        Ok(_) => {}
        Err(error @ kube::runtime::controller::Error::ObjectNotFound(_)) => {
            tracing::debug!(error = %describe(&error), controller);
        }
        Err(error) => tracing::warn!(error = %describe(&error), controller),
    }
}

/// Records an Event about `object`; a failure to do so is logged, not returned.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &kube::runtime::events::Recorder,
    object: &K,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) {
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %error, reason, "failed to record an event");
    }
}

/// Checks that `kind`'s resources can be listed, so that a controller fails at once, saying
/// why, when its CRD is not installed or its RBAC is missing.
pub async fn check_listable<K>(api: &Api<K>, kind: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|error| anyhow::anyhow!("cannot list {kind}; are the CRDs installed? {error}"))
}

/// An error and its causes on one line, for a condition message or a log. An API error shows
/// only the server's message, not its whole status object.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    fn one(error: &(dyn std::error::Error + 'static)) -> String {
        match error.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => status.message.clone(),
            _ => error.to_string(),
        }
    }
    let mut text = one(error);
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = one(cause);
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The label selector of every child the operator makes.
pub fn managed_selector() -> String {
    format!("{}={}", jf_api::MANAGED_BY_LABEL, jf_api::MANAGED_BY)
}

/// How many objects one page of a cache's list holds. A list of whatever version the API
/// server has at hand (`resourceVersion=0`) comes whole, whatever its limit; a list of the
/// latest version comes in pages, so that a cache being filled (at start, or when its watch
/// has fallen too far behind) holds one page of objects as the server sent them, managedFields
/// and all, rather than all of them at once.
const LIST_PAGE_SIZE: u32 = 50;

/// A cache of one kind of child, and the stream of changes that keeps it current. Its objects
/// are [`Packed`] (compressed JSON), without managedFields, uid or resourceVersion: nothing
/// reads them of a child. The stream gives them typed, as they come.
pub fn cache<K>(
    api: Api<K>,
    selector: &str,
) -> (
    Store<Packed<K>>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    cache_with(api, selector, K::DynamicType::default())
}

/// [`cache`] for a kind known at run time (`DynamicObject`).
pub fn cache_with<K>(
    api: Api<K>,
    selector: &str,
    dynamic_type: K::DynamicType,
) -> (
    Store<Packed<K>>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    packed_cache(api, selector, dynamic_type, |_: &mut K| {})
}

/// [`cache`] of objects that are only read, never compared with what is applied: they keep
/// only what `slim` leaves of them, in the cache and in the stream.
pub fn cache_slim<K>(
    api: Api<K>,
    selector: &str,
    slim: impl Fn(&mut K) + Send + 'static,
) -> (
    Store<Packed<K>>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    packed_cache(api, selector, K::DynamicType::default(), slim)
}

/// The cache and stream of [`cache_with`] and [`cache_slim`]: `slim` changes each object
/// before it is packed and streamed.
fn packed_cache<K>(
    api: Api<K>,
    selector: &str,
    dynamic_type: K::DynamicType,
    slim: impl Fn(&mut K) + Send + 'static,
) -> (
    Store<Packed<K>>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let mut writer = reflector::store::Writer::new(dynamic_type);
    let store = writer.as_reader();
    let mut packer = Packer::default();
    let stream = watch(api, selector, move |object: &mut K| {
        let metadata = object.meta_mut();
        metadata.uid = None;
        metadata.resource_version = None;
        slim(object);
    })
    .inspect_ok(move |event| writer.apply_watcher_event(&pack(&mut packer, event)))
    .touched_objects();
    (store, stream)
}

/// The changes to every `K` matching `selector`, listed in pages, without managedFields (often
/// the larger part of an object, and nothing here reads them), then changed by `modify`.
fn watch<K>(
    api: Api<K>,
    selector: &str,
    mut modify: impl FnMut(&mut K) + Send + 'static,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
    if !selector.is_empty() {
        config = config.labels(selector);
    }
    watcher(api, config)
        .modify(move |object| {
            object.meta_mut().managed_fields = None;
            modify(object);
        })
        .default_backoff()
}

/// `event` with its objects packed by `packer`.
fn pack<K: Resource + Serialize>(
    packer: &mut Packer,
    event: &watcher::Event<K>,
) -> watcher::Event<Packed<K>> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(packer.pack(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(packer.pack(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(packer.pack(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A controller of every `K`, whose cache keeps its objects typed, without managedFields.
pub fn controller<K>(api: Api<K>) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let writer = reflector::store::Writer::default();
    let store = writer.as_reader();
    let stream = reflector::reflector(writer, watch(api, "", |_: &mut K| {})).touched_objects();
    Controller::for_stream(stream, store)
}

/// Stamps `object` with the hash of its content.
pub fn stamp<K: Resource + Serialize>(mut object: K) -> K {
    object.annotations_mut().remove(APPLIED_HASH_ANNOTATION);
    let hash = serde_json::to_vec(&object)
        .map(|bytes| format!("{:016x}", jf_api::naming::stable_hash(&bytes)))
        .unwrap_or_default();
    object
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
    object
}

/// Whether every field of `desired` has the same value in `actual` (which may have more).
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    difference(desired, actual).is_none()
}

/// Where `desired` is first not a subset of `actual`, as a path such as
/// `spec.template.spec.containers[0].image`; none when it is a subset.
pub fn difference(desired: &Value, actual: &Value) -> Option<String> {
    match (desired, actual) {
        (Value::Object(desired), Value::Object(actual)) => desired
            .iter()
            .find_map(|(key, value)| match actual.get(key) {
                None => Some(key.clone()),
                Some(actual) => difference(value, actual).map(|path| {
                    if path.starts_with('[') {
                        format!("{key}{path}")
                    } else {
                        format!("{key}.{path}")
                    }
                }),
            })
            .map(|path| path.trim_end_matches('.').to_owned()),
        (Value::Array(desired), Value::Array(actual)) => {
            if desired.len() != actual.len() {
                return Some(String::new());
            }
            desired
                .iter()
                .zip(actual)
                .enumerate()
                .find_map(|(index, (desired, actual))| {
                    difference(desired, actual).map(|path| {
                        if path.is_empty() || path.starts_with('[') {
                            format!("[{index}]{path}")
                        } else {
                            format!("[{index}].{path}")
                        }
                    })
                })
        }
        (desired, actual) => (desired != actual).then(String::new),
    }
}

/// Server-side applies `desired` (stamped) unless the cached copy already matches it.
/// Returns whether it wrote.
pub async fn apply<K>(
    client: &Client,
    store: &Store<Packed<K>>,
    manager: &str,
    desired: K,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    apply_with(client, store, manager, desired, &K::DynamicType::default()).await
}

/// [`apply`] for a kind known at run time (`DynamicObject`).
pub async fn apply_with<K>(
    client: &Client,
    store: &Store<Packed<K>>,
    manager: &str,
    desired: K,
    dynamic_type: &K::DynamicType,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Eq + Hash + Clone,
{
    let desired = stamp(desired);
    let name = desired.name_any();
    let namespace = desired.namespace();
    let mut key = ObjectRef::<Packed<K>>::new_with(&name, dynamic_type.clone());
    if let Some(namespace) = &namespace {
        key = key.within(namespace);
    }
    let differs = match store.get(&key) {
        Some(current) => {
            let mut desired_value = serde_json::to_value(&desired).unwrap_or(Value::Null);
            // Objects listed by a watcher carry no apiVersion or kind; the store's type says
            // them anyway.
            if let Some(fields) = desired_value.as_object_mut() {
                fields.remove("apiVersion");
                fields.remove("kind");
            }
            let Some(path) = difference(&desired_value, &current.value()) else {
                return Ok(false);
            };
            path
        }
        None => "(not in the cache)".to_owned(),
    };
    tracing::debug!(kind = %K::kind(dynamic_type), name, namespace, differs, "applying");
    // Built by hand rather than with `Api`, whose constructors are split by scope.
    let request = kube::core::Request::new(K::url_path(dynamic_type, namespace.as_deref()))
        .patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&desired),
        )
        .map_err(kube::Error::BuildRequest)?;
    client.request::<K>(request).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    use super::*;

    #[test]
    fn subsets() {
        let actual = json!({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}], "f": "g"}});
        assert!(is_subset(&json!({}), &actual));
        assert!(is_subset(&json!({"b": {"c": [1, {"d": 2}]}}), &actual));
        assert!(!is_subset(&json!({"b": {"c": [1]}}), &actual));
        assert!(!is_subset(&json!({"a": 2}), &actual));
        assert!(!is_subset(&json!({"x": null}), &actual));
        assert_eq!(
            difference(&json!({"b": {"c": [1, {"d": 3}]}}), &actual).as_deref(),
            Some("b.c[1].d")
        );
        assert_eq!(
            difference(&json!({"b": {"c": [1]}}), &actual).as_deref(),
            Some("b.c")
        );
        assert_eq!(difference(&json!({"x": 1}), &actual).as_deref(), Some("x"));
        assert_eq!(difference(&json!({"a": 1}), &actual), None);
    }

    #[test]
    fn the_hash_follows_the_content() {
        let config_map = |value: &str| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": value}}))
                .expect("a config map")
        };
        let hash = |object: ConfigMap| stamp(object).annotations()[APPLIED_HASH_ANNOTATION].clone();
        assert_eq!(hash(config_map("1")), hash(config_map("1")));
        assert_ne!(hash(config_map("1")), hash(config_map("2")));
        // Stamping twice gives the same hash: the annotation itself is not hashed.
        assert_eq!(hash(stamp(config_map("1"))), hash(config_map("1")));
    }
}
