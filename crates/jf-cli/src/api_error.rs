//! Errors of the Kubernetes API as a person reads them: the API server's own message
//! (`environments.jango-fett.dev "fix-bug" not found`) rather than kube's debug form.

use kube::core::Status;

/// A failed request to the Kubernetes API.
#[derive(Debug)]
pub struct ApiError(pub kube::Error);

impl ApiError {
    /// The API server's answer, when it answered.
    pub fn status(&self) -> Option<&Status> {
        match &self.0 {
            kube::Error::Api(status) => Some(status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status().is_some_and(|status| status.is_not_found())
    }

    pub fn is_already_exists(&self) -> bool {
        self.status()
            .is_some_and(|status| status.is_already_exists())
    }

    pub fn is_conflict(&self) -> bool {
        self.status().is_some_and(|status| status.is_conflict())
    }

    pub fn is_forbidden(&self) -> bool {
        self.status().is_some_and(|status| status.is_forbidden())
    }

    pub fn is_unauthorized(&self) -> bool {
        self.status().is_some_and(|status| status.code == 401)
    }

    /// Whether the API server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.0, kube::Error::HyperError(_) | kube::Error::Service(_))
    }

    /// Whether asking again cannot help: the answer depends on who asks or on what exists.
    pub fn is_permanent(&self) -> bool {
        self.status()
            .is_some_and(|status| matches!(status.code, 400 | 401 | 403 | 404 | 405 | 422))
    }
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status(), std::error::Error::source(&self.0)) {
            (Some(status), _) if !status.message.is_empty() => formatter.write_str(&status.message),
            (Some(status), _) => write!(formatter, "{} ({})", status.reason, status.code),
            // kube's message repeats its cause's ("ServiceError: client error (Connect)"): say
            // the cause alone, and its causes after it.
            (None, Some(cause)) => write!(formatter, "{cause}"),
            (None, None) => write!(formatter, "{}", self.0),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            // The message says it all; the Status would repeat it.
            kube::Error::Api(_) => None,
            other => std::error::Error::source(other).and_then(std::error::Error::source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> ApiError {
        ApiError(kube::Error::Api(Box::new(Status {
            code,
            reason: reason.to_owned(),
            message: message.to_owned(),
            ..Status::default()
        })))
    }

    #[test]
    fn shows_the_servers_message() {
        let error = api(
            404,
            "NotFound",
            r#"environments.jango-fett.dev "x" not found"#,
        );
        assert_eq!(
            error.to_string(),
            r#"environments.jango-fett.dev "x" not found"#
        );
        assert!(error.is_not_found() && error.is_permanent());
        assert!(std::error::Error::source(&error).is_none());

        let error = api(409, "Conflict", "");
        assert_eq!(error.to_string(), "Conflict (409)");
        assert!(error.is_conflict() && !error.is_permanent());
    }
}
