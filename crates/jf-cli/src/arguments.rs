//! Checks of command-line values, run by clap while it parses, so a bad value is a usage error
//! (exit code 2) that says what is allowed, before anything is sent to the cluster.

use jf_api::naming::{ENVIRONMENT_NAME_MAX, RESERVED_CONFIG_PREFIX, is_config_key, is_dns_label};

/// Like Kubernetes' limit on user and group names in RBAC subjects.
const SUBJECT_NAME_MAX: usize = 253;

/// An environment name: a DNS label of at most 40 characters.
pub fn environment_name(name: &str) -> Result<String, String> {
    if is_dns_label(name, ENVIRONMENT_NAME_MAX) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "an environment name must be a DNS label of at most {ENVIRONMENT_NAME_MAX} characters: \
             lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// The longest PostgreSQL resource name: its Secret's name, `<name>-postgresql`, must fit in 63.
const POSTGRESQL_NAME_MAX: usize = 53;

/// The name of a PostgreSQL resource: a DNS subdomain of at most 53 characters, as the API
/// server accepts it.
pub fn postgresql_name(name: &str) -> Result<String, String> {
    if name.len() <= POSTGRESQL_NAME_MAX
        && name
            .split('.')
            .all(|label| is_dns_label(label, POSTGRESQL_NAME_MAX))
    {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "a database name must have at most {POSTGRESQL_NAME_MAX} characters: lowercase \
             letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// The longest App name: its host name, `<app>-<environment>.<domain>`, must fit.
const APP_NAME_MAX: usize = 40;

/// An App name: a DNS label of at most 40 characters.
pub fn app_name(name: &str) -> Result<String, String> {
    if is_dns_label(name, APP_NAME_MAX) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "an app name must be a DNS label of at most {APP_NAME_MAX} characters: lowercase \
             letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// The name of a Kubernetes object (a Blueprint, a Deployment…): a DNS subdomain.
pub fn object_name(name: &str) -> Result<String, String> {
    if name.len() <= 253 && name.split('.').all(|label| is_dns_label(label, 63)) {
        Ok(name.to_owned())
    } else {
        Err(
            "a name must have at most 253 characters: lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
                .to_owned(),
        )
    }
}

/// A `CONTAINER=IMAGE` pair: a container name and an image reference.
pub fn image_pair(pair: &str) -> Result<(String, String), String> {
    let (container, image) = pair.split_once('=').ok_or_else(|| {
        format!(
            "expected CONTAINER=IMAGE, e.g. api=registry.example.com/api:my-branch, not {pair:?}"
        )
    })?;
    if !is_dns_label(container, 63) {
        return Err(format!(
            "{container:?} is not a container name: lowercase letters, digits and '-', at most 63 characters"
        ));
    }
    if image.is_empty() || image.len() > 512 || image.chars().any(char::is_whitespace) {
        return Err(format!(
            "{image:?} is not an image reference: 1 to 512 characters, no spaces"
        ));
    }
    Ok((container.to_owned(), image.to_owned()))
}

/// A configuration key: letters, digits, `-`, `_` and `.`, not starting with `JF_`.
pub fn config_key(key: &str) -> Result<String, String> {
    if is_config_key(key) {
        Ok(key.to_owned())
    } else if key.starts_with(RESERVED_CONFIG_PREFIX) {
        Err(format!(
            "config keys starting with {RESERVED_CONFIG_PREFIX} are reserved for the values Jango Fett sets"
        ))
    } else {
        Err("a config key may only contain letters, digits, '-', '_' and '.' (at most 253 characters)".to_owned())
    }
}

/// A `KEY=VALUE` pair of configuration; the value may be empty and may contain `=`.
pub fn config_pair(pair: &str) -> Result<(String, String), String> {
    let (key, value) = pair
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, e.g. FEATURE_X=on, not {pair:?}"))?;
    Ok((config_key(key)?, value.to_owned()))
}

/// A user or group name as RBAC knows it.
pub fn subject_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > SUBJECT_NAME_MAX {
        Err(format!(
            "a user or group name must have 1 to {SUBJECT_NAME_MAX} characters"
        ))
    } else {
        Ok(name.to_owned())
    }
}

/// The ClusterRole the users get in the namespace; never `cluster-admin`.
pub fn role(role: &str) -> Result<String, String> {
    if role == "cluster-admin" {
        Err(
            "cluster-admin can never be granted to an environment's users; use admin, edit or view"
                .to_owned(),
        )
    } else {
        subject_name(role).map_err(|_| "a role name must have 1 to 253 characters".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names() {
        assert_eq!(environment_name("fix-bug"), Ok("fix-bug".to_owned()));
        for bad in ["Fix-bug", "fix_bug", "-fix", "", &"a".repeat(41)] {
            let error = environment_name(bad).expect_err(bad);
            assert!(
                error.contains("DNS label of at most 40 characters"),
                "{error}"
            );
        }
    }

    #[test]
    fn postgresql_names() {
        for good in ["api", "logistics-api", "a.b", &"a".repeat(53)] {
            assert_eq!(postgresql_name(good), Ok(good.to_owned()));
        }
        for bad in [
            "Api",
            "api_1",
            "-api",
            "api-",
            "a..b",
            ".a",
            "",
            &"a".repeat(54),
        ] {
            let error = postgresql_name(bad).expect_err(bad);
            assert!(error.contains("at most 53 characters"), "{error}");
        }
    }

    #[test]
    fn config_pairs() {
        assert_eq!(
            config_pair("FEATURE_X=on"),
            Ok(("FEATURE_X".to_owned(), "on".to_owned()))
        );
        assert_eq!(
            config_pair("url=a=b"),
            Ok(("url".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            config_pair("empty="),
            Ok(("empty".to_owned(), String::new()))
        );
        assert!(
            config_pair("no-equals")
                .expect_err("no =")
                .contains("KEY=VALUE")
        );
        assert!(
            config_pair("JF_URL=x")
                .expect_err("reserved")
                .contains("reserved")
        );
        assert!(
            config_pair("has space=x")
                .expect_err("space")
                .contains("letters, digits")
        );
        assert!(
            config_pair("=x")
                .expect_err("empty key")
                .contains("letters, digits")
        );
    }

    #[test]
    fn app_names_and_images() {
        assert_eq!(app_name("logistics-api"), Ok("logistics-api".to_owned()));
        assert!(app_name(&"a".repeat(41)).is_err());
        assert!(app_name("a.b").expect_err("a dot").contains("DNS label"));
        assert_eq!(object_name("a.b-c"), Ok("a.b-c".to_owned()));
        assert!(object_name("A").is_err());
        assert_eq!(
            image_pair("api=registry.example.com:5000/api:fix@sha256:abc"),
            Ok((
                "api".to_owned(),
                "registry.example.com:5000/api:fix@sha256:abc".to_owned()
            ))
        );
        assert!(
            image_pair("api")
                .expect_err("no =")
                .contains("CONTAINER=IMAGE")
        );
        assert!(
            image_pair("Api=x")
                .expect_err("bad name")
                .contains("container name")
        );
        assert!(
            image_pair("api=")
                .expect_err("no image")
                .contains("image reference")
        );
        assert!(
            image_pair("api=a b")
                .expect_err("space")
                .contains("no spaces")
        );
    }

    #[test]
    fn roles() {
        assert_eq!(role("edit"), Ok("edit".to_owned()));
        assert!(
            role("cluster-admin")
                .expect_err("forbidden")
                .contains("never")
        );
        assert!(role("").is_err());
    }
}
