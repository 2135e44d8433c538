//! What a controller wrote to statuses that its cache may not show yet.
//!
//! A reconciliation's own writes to children queue the next one, which can start before the
//! watch has brought back the status the first one wrote. It would see the old status and
//! write the same one again. Remembering which versions of the object a status was written
//! over tells that case apart: when the cache still shows one of exactly those versions, the
//! write is in flight, not missing. Any other version (ours arrived, or someone else wrote)
//! is compared as usual.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::Mutex;

use serde::Serialize;

/// Per object: the versions a status was written over, and a hash of that status.
#[derive(Debug, Default)]
pub struct Written {
    objects: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    over: Vec<String>,
    status: u64,
}

impl Written {
    /// Whether `status` was already written over `version`, the version the cache shows now.
    /// Forgets the object once the cache shows any other version.
    pub fn already<S: Serialize>(&self, key: &str, version: Option<&str>, status: &S) -> bool {
        let Ok(mut objects) = self.objects.lock() else {
            return false;
        };
        let Some(entry) = objects.get(key) else {
            return false;
        };
        if version.is_some_and(|version| entry.over.iter().any(|over| over == version)) {
            return entry.status == hash(status);
        }
        objects.remove(key);
        false
    }

    /// Records that `status` was written over each of `versions`.
    pub fn record<S: Serialize>(&self, key: &str, versions: Vec<String>, status: &S) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.insert(
                key.to_owned(),
                Entry {
                    over: versions,
                    status: hash(status),
                },
            );
        }
    }

    /// Forgets `key` (its object is gone).
    pub fn forget(&self, key: &str) {
        if let Ok(mut objects) = self.objects.lock() {
            objects.remove(key);
        }
    }
}

/// A hash of `status` without its conditions' transition times: two reconciliations that
/// reach the same conclusion a second apart write the same status.
fn hash<S: Serialize>(status: &S) -> u64 {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(conditions) = value
        .get_mut("conditions")
        .and_then(serde_json::Value::as_array_mut)
    {
        for condition in conditions
            .iter_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            condition.remove("lastTransitionTime");
        }
    }
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_versions_written_over_count() {
        let written = Written::default();
        let status = serde_json::json!({"phase": "Ready"});
        assert!(!written.already("a", Some("1"), &status));
        written.record("a", vec!["1".to_owned(), "2".to_owned()], &status);
        assert!(written.already("a", Some("1"), &status));
        assert!(written.already("a", Some("2"), &status));
        // Another status over the same version is written.
        assert!(!written.already("a", Some("2"), &serde_json::json!({"phase": "Failed"})));
        // Another version: ours arrived or someone else wrote; compared as usual from now on.
        assert!(!written.already("a", Some("3"), &status));
        assert!(!written.already("a", Some("1"), &status));
        assert!(!written.already("b", Some("1"), &status));
    }

    #[test]
    fn transition_times_do_not_count() {
        let written = Written::default();
        let at = |time: &str| serde_json::json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": time}]});
        written.record("a", vec!["1".to_owned()], &at("2026-01-01T00:00:00Z"));
        assert!(written.already("a", Some("1"), &at("2026-01-01T00:00:01Z")));
    }
}
