//! Cached children kept as text.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::reflector::Lookup;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A cached copy of a child, kept as its JSON text, compressed against the first object its
/// cache packed ([`Packer`]); its name and namespace are kept apart, for the cache's key and
/// to pick a namespace's objects without unpacking the others. As a typed object it takes ten times that in maps, options and
/// small strings, and the caches of children hold every child of every environment, while a
/// reconciliation reads only its own: with [`Packed::object`], or [`Packed::value`] to
/// compare it with what is applied.
pub struct Packed<K> {
    name: Box<str>,
    namespace: Option<Box<str>>,
    bytes: Box<[u8]>,
    dictionary: Arc<[u8]>,
    kind: PhantomData<fn() -> K>,
}

/// Packs the objects of one cache. The objects of a cache are alike (the same kind, made by
/// the same code), so each is compressed against the first one: what is left is mostly names
/// and uids.
#[derive(Default)]
pub struct Packer {
    dictionary: Option<Arc<[u8]>>,
}

impl Packer {
    /// `object` packed. Should it not serialize (the types here always do), only its name
    /// and namespace are kept, which any comparison finds different.
    pub fn pack<K: Resource + Serialize>(&mut self, object: &K) -> Packed<K> {
        let json = serde_json::to_vec(object)
            .inspect_err(|error| {
                tracing::error!(kind = %std::any::type_name::<K>(), %error, "cannot cache an object");
            })
            .unwrap_or_default();
        let dictionary = self
            .dictionary
            .get_or_insert_with(|| Arc::from(json.as_slice()))
            .clone();
        let metadata = object.meta();
        Packed {
            name: metadata.name.as_deref().unwrap_or_default().into(),
            namespace: metadata.namespace.as_deref().map(Into::into),
            bytes: lz4_flex::block::compress_prepend_size_with_dict(&json, &dictionary)
                .into_boxed_slice(),
            dictionary,
            kind: PhantomData,
        }
    }
}

impl<K> Packed<K> {
    /// The namespace, read without unpacking the object.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The JSON text; empty should it not decompress (which is logged).
    fn text(&self) -> Vec<u8> {
        lz4_flex::block::decompress_size_prepended_with_dict(&self.bytes, &self.dictionary)
            .inspect_err(|error| {
                tracing::error!(kind = %std::any::type_name::<K>(), %error, "cannot read a cached object");
            })
            .unwrap_or_default()
    }

    /// The object as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.text()).unwrap_or(Value::Null)
    }
}

impl<K: DeserializeOwned> Packed<K> {
    /// The object, typed; none only if the text no longer reads as `K`, which is logged.
    pub fn object(&self) -> Option<K> {
        serde_json::from_slice(&self.text())
            .inspect_err(|error| {
                tracing::error!(kind = %std::any::type_name::<K>(), %error, "cannot read a cached object");
            })
            .ok()
    }
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            bytes: self.bytes.clone(),
            dictionary: self.dictionary.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Packed<K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_tuple("Packed")
            .field(&String::from_utf8_lossy(&self.text()))
            .finish()
    }
}

/// Keyed like `K` in a cache. A packed copy keeps no uid or resourceVersion: nothing reads
/// them of a child.
impl<K: Resource> Lookup for Packed<K> {
    type DynamicType = K::DynamicType;

    fn kind(dynamic_type: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dynamic_type)
    }

    fn group(dynamic_type: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dynamic_type)
    }

    fn version(dynamic_type: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dynamic_type)
    }

    fn plural(dynamic_type: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dynamic_type)
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.namespace.as_deref().map(Cow::Borrowed)
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::api::{ApiResource, DynamicObject};
    use kube::runtime::reflector::ObjectRef;
    use serde_json::json;

    use super::*;

    fn network_policy() -> NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": {"name": "isolate", "namespace": "env-a", "labels": {"a": "b"}},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
        }))
        .expect("a network policy")
    }

    #[test]
    fn a_packed_copy_reads_back_as_the_object() {
        let packed = Packer::default().pack(&network_policy());
        assert_eq!(packed.object(), Some(network_policy()));
        assert_eq!(
            packed.value()["spec"]["ingress"][0]["from"][0],
            json!({"podSelector": {}})
        );
        assert_eq!(
            packed.to_object_ref(()),
            ObjectRef::<Packed<NetworkPolicy>>::new("isolate").within("env-a")
        );
    }

    #[test]
    fn a_packer_packs_alike_objects_small() {
        let mut packer = Packer::default();
        let first = packer.pack(&network_policy());
        let mut other = network_policy();
        other.metadata.name = Some("another".to_owned());
        let second = packer.pack(&other);
        assert_eq!(first.object(), Some(network_policy()));
        assert_eq!(second.object(), Some(other));
        let text = serde_json::to_vec(&network_policy()).expect("json");
        assert!(
            second.bytes.len() * 4 < text.len(),
            "{} bytes packed of {}",
            second.bytes.len(),
            text.len()
        );
    }

    #[test]
    fn a_packed_dynamic_object_is_keyed_by_its_resource() {
        let resource = ApiResource::erase::<NetworkPolicy>(&());
        let object: DynamicObject =
            serde_json::from_value(serde_json::to_value(network_policy()).expect("json"))
                .expect("a dynamic object");
        let packed = Packer::default().pack(&object);
        assert_eq!(
            packed.to_object_ref(resource.clone()),
            ObjectRef::new_with("isolate", resource).within("env-a")
        );
        assert_eq!(packed.object().map(|object| object.data), Some(object.data));
    }
}
