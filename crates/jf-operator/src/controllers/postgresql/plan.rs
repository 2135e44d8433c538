//! The pure part of the PostgreSQL controller: from what the server has, the steps that make
//! it what the resource asks for, or the reason to refuse. Nothing of ours is ever assumed
//! from a name alone: a role is ours when it carries our marker, a database when our role
//! owns it.

use std::collections::BTreeSet;

use crate::postgres::{Observed, sql};

/// The server-side names of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The database; the login role has the same name.
    pub database: String,
    pub secret: String,
}

impl Names {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            database: jf_api::naming::database_name(namespace, name),
            secret: jf_api::naming::postgresql_secret(name),
        }
    }

    pub fn role(&self) -> &str {
        &self.database
    }
}

/// Why the operator will not touch the server for a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the extension {extension:?} is not allowed (allowed: {allowed})")]
    ExtensionNotAllowed { extension: String, allowed: String },
    #[error(
        "a role {role} already exists on the server and was not made for this resource; it is left untouched"
    )]
    RoleConflict { role: String },
    #[error(
        "a database {database} owned by {owner} already exists on the server and was not made for this resource; it is left untouched"
    )]
    DatabaseConflict { database: String, owner: String },
    #[error("the template database {template:?} does not exist")]
    TemplateNotFound { template: String },
    #[error(
        "the database {template:?} is not a template (datistemplate is false); only template databases may be cloned"
    )]
    NotATemplate { template: String },
}

impl Refusal {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ExtensionNotAllowed { .. } => "ExtensionNotAllowed",
            Self::RoleConflict { .. } => "RoleConflict",
            Self::DatabaseConflict { .. } => "DatabaseConflict",
            Self::TemplateNotFound { .. } => "TemplateNotFound",
            Self::NotATemplate { .. } => "NotATemplate",
        }
    }
}

/// The requested extensions, with aliases resolved, each checked against the allowlist.
pub fn extensions(requested: &[String], allowed: &[String]) -> Result<BTreeSet<String>, Refusal> {
    requested
        .iter()
        .map(|extension| {
            let extension = match extension.as_str() {
                "uuid" => "uuid-ossp",
                other => other,
            };
            if allowed.iter().any(|allowed| allowed == extension) {
                Ok(extension.to_owned())
            } else {
                Err(Refusal::ExtensionNotAllowed {
                    extension: extension.to_owned(),
                    allowed: allowed.join(", "),
                })
            }
        })
        .collect()
}

/// One thing to do on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create the marked login role with the Secret's password.
    CreateRole,
    /// Let the role log in, with the Secret's password.
    SetPassword,
    /// Create the database, owned by the role (from the template, if any).
    CreateDatabase,
    /// Revoke PUBLIC's access and mark the database.
    SecureDatabase,
}

/// The steps that bring the server to the resource's state.
pub fn plan(
    observed: &Observed,
    names: &Names,
    uid: &str,
    template: Option<&str>,
) -> Result<Vec<Step>, Refusal> {
    let mut steps = Vec::new();
    let marker = sql::marker(uid);
    match &observed.role {
        None => steps.push(Step::CreateRole),
        Some(role) if role.marker.as_deref() == Some(marker.as_str()) => {
            if !role.can_login {
                steps.push(Step::SetPassword);
            }
        }
        Some(_) => {
            return Err(Refusal::RoleConflict {
                role: names.role().to_owned(),
            });
        }
    }
    match &observed.database {
        None => {
            if let Some(template) = template {
                match observed.template {
                    None => {
                        return Err(Refusal::TemplateNotFound {
                            template: template.to_owned(),
                        });
                    }
                    Some(false) => {
                        return Err(Refusal::NotATemplate {
                            template: template.to_owned(),
                        });
                    }
                    Some(true) => {}
                }
            }
            steps.extend([Step::CreateDatabase, Step::SecureDatabase]);
        }
        Some(database) if database.owner == names.role() => {
            if database.public_access {
                steps.push(Step::SecureDatabase);
            }
        }
        Some(database) => {
            return Err(Refusal::DatabaseConflict {
                database: names.database.clone(),
                owner: database.owner.clone(),
            });
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use crate::postgres::{Database, Role};

    use super::*;

    fn names() -> Names {
        Names::new("jf-fix-bug", "api")
    }

    fn ours() -> Role {
        Role {
            marker: Some("jango-fett:uid-1".to_owned()),
            can_login: true,
        }
    }

    fn owned(owner: &str, public_access: bool) -> Database {
        Database {
            owner: owner.to_owned(),
            public_access,
        }
    }

    #[test]
    fn a_fresh_resource_gets_everything() {
        let steps = plan(&Observed::default(), &names(), "uid-1", None);
        assert_eq!(
            steps,
            Ok(vec![
                Step::CreateRole,
                Step::CreateDatabase,
                Step::SecureDatabase
            ])
        );
    }

    #[test]
    fn nothing_to_do_when_all_is_in_place() {
        let names = names();
        let observed = Observed {
            role: Some(ours()),
            database: Some(owned(names.role(), false)),
            template: None,
        };
        assert_eq!(plan(&observed, &names, "uid-1", None), Ok(vec![]));
    }

    #[test]
    fn completes_what_a_crash_left_half_done() {
        let names = names();
        // Crashed after the Secret was written: no role yet.
        assert_eq!(
            plan(&Observed::default(), &names, "uid-1", None).map(|steps| steps[0]),
            Ok(Step::CreateRole)
        );
        // Crashed after CREATE DATABASE, before REVOKE.
        let observed = Observed {
            role: Some(ours()),
            database: Some(owned(names.role(), true)),
            template: None,
        };
        assert_eq!(
            plan(&observed, &names, "uid-1", None),
            Ok(vec![Step::SecureDatabase])
        );
        // Crashed while dropping: logins were blocked, the database dropped by hand since.
        let observed = Observed {
            role: Some(Role {
                can_login: false,
                ..ours()
            }),
            database: None,
            template: None,
        };
        assert_eq!(
            plan(&observed, &names, "uid-1", None),
            Ok(vec![
                Step::SetPassword,
                Step::CreateDatabase,
                Step::SecureDatabase
            ])
        );
    }

    #[test]
    fn never_adopts_what_is_not_ours() {
        let names = names();
        let foreign_role = Observed {
            role: Some(Role {
                marker: None,
                can_login: true,
            }),
            ..Observed::default()
        };
        assert_eq!(
            plan(&foreign_role, &names, "uid-1", None).map_err(|refusal| refusal.reason()),
            Err("RoleConflict")
        );
        // Another resource's role (a resource of the same name, deleted and made again).
        let other = Observed {
            role: Some(Role {
                marker: Some("jango-fett:uid-0".to_owned()),
                can_login: true,
            }),
            ..Observed::default()
        };
        assert_eq!(
            plan(&other, &names, "uid-1", None).map_err(|refusal| refusal.reason()),
            Err("RoleConflict")
        );
        let foreign_database = Observed {
            role: Some(ours()),
            database: Some(owned("postgres", true)),
            template: None,
        };
        assert_eq!(
            plan(&foreign_database, &names, "uid-1", None).map_err(|refusal| refusal.reason()),
            Err("DatabaseConflict")
        );
    }

    #[test]
    fn clones_only_templates() {
        let names = names();
        let missing = Observed::default();
        assert_eq!(
            plan(&missing, &names, "uid-1", Some("seed")).map_err(|refusal| refusal.reason()),
            Err("TemplateNotFound")
        );
        let not_template = Observed {
            template: Some(false),
            ..Observed::default()
        };
        assert_eq!(
            plan(&not_template, &names, "uid-1", Some("postgres"))
                .map_err(|refusal| refusal.reason()),
            Err("NotATemplate")
        );
        let template = Observed {
            template: Some(true),
            ..Observed::default()
        };
        assert_eq!(
            plan(&template, &names, "uid-1", Some("seed")),
            Ok(vec![
                Step::CreateRole,
                Step::CreateDatabase,
                Step::SecureDatabase
            ])
        );
    }

    #[test]
    fn extensions_resolve_aliases_and_respect_the_allowlist() {
        let allowed: Vec<String> = ["uuid-ossp", "pgcrypto"].map(str::to_owned).to_vec();
        let requested: Vec<String> = ["uuid", "pgcrypto", "uuid-ossp"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(
            extensions(&requested, &allowed),
            Ok(BTreeSet::from([
                "pgcrypto".to_owned(),
                "uuid-ossp".to_owned()
            ]))
        );
        let refused = extensions(&["plpython3u".to_owned()], &allowed).expect_err("not allowed");
        assert_eq!(refused.reason(), "ExtensionNotAllowed");
        assert_eq!(
            refused.to_string(),
            "the extension \"plpython3u\" is not allowed (allowed: uuid-ossp, pgcrypto)"
        );
    }
}
