//! The operations behind `jf`'s commands. Command modules (`cmds/`) parse arguments and print;
//! the work is here, where tests can call it directly.

pub mod api_error;
pub mod apps;
pub mod arguments;
pub mod connection;
pub mod databases;
pub mod duration;
pub mod environments;
pub mod output;
pub mod redis;
pub mod wait;
pub mod workloads;

/// What the user can do about `error`: the hint of the first error in its chain that has one.
pub fn hint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        let hint = if let Some(error) = error.downcast_ref::<environments::Error>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<databases::Error>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<apps::Error>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<workloads::Error>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<redis::Error>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<wait::Error>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<connection::ConnectionError>() {
            error.hint()
        } else if let Some(error) = error.downcast_ref::<api_error::ApiError>() {
            if error.is_unauthorized() {
                Some("the cluster did not accept your credentials; log in again".to_owned())
            } else if error.is_unreachable() {
                Some(
                    "check that the cluster is up and that --context (or your kubeconfig's \
                     current context) names it"
                        .to_owned(),
                )
            } else {
                None
            }
        } else {
            None
        };
        if hint.is_some() {
            return hint;
        }
        next = error.source();
    }
    None
}
