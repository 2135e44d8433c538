//! The SQL the PostgreSQL controller runs, built as text with every identifier quoted and
//! every literal escaped. Pure: no connection here.

/// The prefix of the ownership marker commented on every role and database the operator
/// creates; the rest is the PostgreSQL resource's UID.
pub const MARKER_PREFIX: &str = "jango-fett:";

/// The marker of the resource with `uid`.
pub fn marker(uid: &str) -> String {
    format!("{MARKER_PREFIX}{uid}")
}

/// `"name"`, with any `"` doubled. Rejects NUL, which PostgreSQL cannot store.
pub fn identifier(name: &str) -> Result<String, InvalidText> {
    if name.contains('\0') || name.is_empty() || name.len() > 63 {
        return Err(InvalidText(name.escape_default().to_string()));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `'text'`, with any `'` doubled (`standard_conforming_strings` is on since 9.1, so a
/// backslash is an ordinary character). Rejects NUL.
pub fn literal(text: &str) -> Result<String, InvalidText> {
    if text.contains('\0') {
        return Err(InvalidText(text.escape_default().to_string()));
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// Text that cannot be put into SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} cannot be used as a PostgreSQL identifier or literal")]
pub struct InvalidText(pub String);

/// Statements run together, in one transaction when `transaction` is set (some, such as
/// `CREATE DATABASE`, may not run in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub statements: Vec<String>,
    pub transaction: bool,
}

impl Batch {
    fn single(statement: String) -> Self {
        Self {
            statements: vec![statement],
            transaction: false,
        }
    }
}

/// The login role and its marker, in one transaction so a role never exists unmarked. The
/// password arrives as a SCRAM-SHA-256 verifier computed here, never in clear.
pub fn create_role(role: &str, verifier: &str, uid: &str) -> Result<Batch, InvalidText> {
    let role = identifier(role)?;
    Ok(Batch {
        statements: vec![
            format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 NOBYPASSRLS PASSWORD {}",
                literal(verifier)?
            ),
            format!("COMMENT ON ROLE {role} IS {}", literal(&marker(uid))?),
        ],
        transaction: true,
    })
}

/// Sets the role's password (to the Secret's, when they disagree) and lets it log in.
pub fn set_password(role: &str, verifier: &str) -> Result<Batch, InvalidText> {
    Ok(Batch::single(format!(
        "ALTER ROLE {} LOGIN PASSWORD {}",
        identifier(role)?,
        literal(verifier)?
    )))
}

/// The database, owned by the role: its owner is what marks it as ours, from the moment it
/// exists (`CREATE DATABASE` cannot share a transaction with a `COMMENT`).
pub fn create_database(
    database: &str,
    owner: &str,
    template: Option<&str>,
) -> Result<Batch, InvalidText> {
    let mut statement = format!(
        "CREATE DATABASE {} OWNER {}",
        identifier(database)?,
        identifier(owner)?
    );
    if let Some(template) = template {
        statement.push_str(&format!(" TEMPLATE {}", identifier(template)?));
    }
    Ok(Batch::single(statement))
}

/// Closes the database to everyone but its owner, and marks it.
pub fn secure_database(database: &str, uid: &str, description: &str) -> Result<Batch, InvalidText> {
    let database = identifier(database)?;
    Ok(Batch {
        statements: vec![
            format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC"),
            format!(
                "COMMENT ON DATABASE {database} IS {}",
                literal(&format!("{} {description}", marker(uid)))?
            ),
        ],
        transaction: true,
    })
}

/// Run in the database itself.
pub fn create_extension(extension: &str) -> Result<Batch, InvalidText> {
    Ok(Batch::single(format!(
        "CREATE EXTENSION IF NOT EXISTS {}",
        identifier(extension)?
    )))
}

/// Run in a database cloned from a template: gives `role` every schema, relation, routine
/// and type that came with the template (objects of extensions excepted), so the
/// application can migrate them. Objects it already owns are left alone.
pub fn adopt_template_objects(role: &str) -> Result<Batch, InvalidText> {
    let owner = literal(role)?;
    Ok(Batch::single(format!(
        r#"DO $adopt$
DECLARE
  owner text := {owner};
  item record;
BEGIN
  FOR item IN
    SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, owner) AS statement
    FROM pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND pg_get_userbyid(n.nspowner) NOT IN (owner, 'pg_database_owner')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
    UNION ALL
    SELECT format('ALTER %s %I.%I OWNER TO %I',
             CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                            WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
             n.nspname, c.relname, owner)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND pg_get_userbyid(c.relowner) <> owner
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e'))
    UNION ALL
    SELECT format('ALTER ROUTINE %I.%I(%s) OWNER TO %I', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), owner)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND pg_get_userbyid(p.proowner) <> owner
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT format('ALTER TYPE %I.%I OWNER TO %I', n.nspname, t.typname, owner)
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r', 'm') AND t.typrelid = 0
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND pg_get_userbyid(t.typowner) <> owner
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE item.statement;
  END LOOP;
END
$adopt$"#
    )))
}

/// Stops the role from logging in again, before its database is dropped.
pub fn block_logins(role: &str) -> Result<Batch, InvalidText> {
    Ok(Batch::single(format!(
        "ALTER ROLE {} NOLOGIN",
        identifier(role)?
    )))
}

/// Drops the database, terminating the connections to it.
pub fn drop_database(database: &str) -> Result<Batch, InvalidText> {
    Ok(Batch::single(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        identifier(database)?
    )))
}

pub fn drop_role(role: &str) -> Result<Batch, InvalidText> {
    Ok(Batch::single(format!(
        "DROP ROLE IF EXISTS {}",
        identifier(role)?
    )))
}

/// What the server says about a resource's role, database and template, in one query.
pub const OBSERVE: &str = "\
SELECT
  EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS role_exists,
  (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1) AS role_marker,
  (SELECT rolcanlogin FROM pg_roles WHERE rolname = $1) AS role_can_login,
  (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $2) AS database_owner,
  (SELECT datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(datacl) AS acl WHERE acl.grantee = 0)
     FROM pg_database WHERE datname = $2) AS public_access,
  (SELECT datistemplate FROM pg_database WHERE datname = $3) AS template";

/// The role's password verifier; needs a superuser (or `pg_read_all_data`-like rights).
pub const PASSWORD: &str = "SELECT rolpassword FROM pg_authid WHERE rolname = $1";

/// The extensions of the database the connection is to.
pub const EXTENSIONS: &str = "SELECT extname FROM pg_extension ORDER BY extname";

/// `user:password@` for a URL, every byte outside RFC 3986's unreserved set percent-encoded.
pub fn url_credentials(user: &str, password: &str) -> String {
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect()
    }
    format!("{}:{}@", encode(user), encode(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers_and_literals() {
        assert_eq!(identifier("jf_app").as_deref(), Ok("\"jf_app\""));
        assert_eq!(identifier("uuid-ossp").as_deref(), Ok("\"uuid-ossp\""));
        assert_eq!(
            identifier("uuid\"; DROP DATABASE x; --").as_deref(),
            Ok("\"uuid\"\"; DROP DATABASE x; --\"")
        );
        assert!(identifier("a\0b").is_err());
        assert!(identifier("").is_err());
        assert!(identifier(&"a".repeat(64)).is_err());
        assert_eq!(literal("it's").as_deref(), Ok("'it''s'"));
        assert_eq!(literal("back\\slash").as_deref(), Ok("'back\\slash'"));
        assert!(literal("a\0").is_err());
    }

    #[test]
    fn role_creation_is_one_transaction_with_its_marker() {
        let batch =
            create_role("jf_app", "SCRAM-SHA-256$4096:c2FsdA==$a:b", "uid-1").expect("valid");
        assert!(batch.transaction);
        assert_eq!(
            batch.statements,
            [
                "CREATE ROLE \"jf_app\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b'",
                "COMMENT ON ROLE \"jf_app\" IS 'jango-fett:uid-1'",
            ]
        );
    }

    #[test]
    fn database_statements() {
        assert_eq!(
            create_database("jf_db", "jf_db", Some("seed"))
                .expect("valid")
                .statements,
            ["CREATE DATABASE \"jf_db\" OWNER \"jf_db\" TEMPLATE \"seed\""]
        );
        let secure = secure_database("jf_db", "uid-1", "ns/app").expect("valid");
        assert!(secure.transaction);
        assert_eq!(
            secure.statements,
            [
                "REVOKE ALL ON DATABASE \"jf_db\" FROM PUBLIC",
                "COMMENT ON DATABASE \"jf_db\" IS 'jango-fett:uid-1 ns/app'",
            ]
        );
        assert_eq!(
            drop_database("jf_db").expect("valid").statements,
            ["DROP DATABASE IF EXISTS \"jf_db\" WITH (FORCE)"]
        );
        assert_eq!(
            create_extension("uuid-ossp").expect("valid").statements,
            ["CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\""]
        );
    }

    #[test]
    fn template_objects_are_adopted_by_a_quoted_role() {
        let batch = adopt_template_objects("jf_o'brien").expect("valid");
        let statement = &batch.statements[0];
        assert!(
            statement.contains("owner text := 'jf_o''brien';"),
            "{statement}"
        );
        assert!(statement.starts_with("DO $adopt$") && statement.ends_with("$adopt$"));
    }

    #[test]
    fn encodes_url_credentials() {
        assert_eq!(url_credentials("jf_app", "abcXYZ09"), "jf_app:abcXYZ09@");
        assert_eq!(url_credentials("a b", "p@ss:/w"), "a%20b:p%40ss%3A%2Fw@");
    }
}
