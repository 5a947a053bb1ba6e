//! Where the voicemail table is: `--db URL`, `$VMTOOL_DB`, or what the PBX
//! itself uses — voicemail.conf `odbcstorage`/`odbctable`, the named
//! connection of `res_odbc.conf` and its unixODBC DSN in `odbc.ini`.

use super::db::{tls_demand, DbTarget, Kind};
use crate::config::VoicemailConf;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Asterisk's built-in `odbctable` (the alembic scripts create `voicemail_messages`).
pub const DEFAULT_TABLE: &str = "voicemessages";

/// How to reach the table.
#[derive(Debug, Clone)]
pub struct Found {
    pub target: DbTarget,
    pub table: String,
}

fn general<'a>(vc: Option<&'a VoicemailConf>, key: &str) -> Option<&'a str> {
    vc?.general
        .vars
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The table's name: `--db-table`, else `odbctable`, else Asterisk's default.
pub fn table_name(arg: Option<&str>, vc: Option<&VoicemailConf>) -> String {
    arg.map(str::to_string)
        .or_else(|| general(vc, "odbctable").map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_TABLE.to_string())
}

/// `None` when the site keeps voicemail in files.
pub fn find(
    url: Option<&str>,
    env_url: Option<&str>,
    table: Option<&str>,
    vc: Option<&VoicemailConf>,
    etc_dir: &Path,
    odbc_ini: Option<&Path>,
) -> Result<Option<Found>> {
    let target = if let Some(u) = url {
        DbTarget::parse_url(u, "--db")?
    } else if let Some(u) = env_url.filter(|u| !u.is_empty()) {
        DbTarget::parse_url(u, "$VMTOOL_DB")?
    } else if let Some(name) = general(vc, "odbcstorage") {
        from_res_odbc(name, etc_dir, odbc_ini)?
    } else {
        return Ok(None);
    };
    Ok(Some(Found {
        target,
        table: table_name(table, vc),
    }))
}

/// The unixODBC system DSN file: `$ODBCINI`, `$ODBCSYSINI/odbc.ini`, /etc/odbc.ini.
pub fn default_odbc_ini() -> PathBuf {
    if let Some(p) = std::env::var_os("ODBCINI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("ODBCSYSINI").filter(|p| !p.is_empty()) {
        return Path::new(&d).join("odbc.ini");
    }
    PathBuf::from("/etc/odbc.ini")
}

fn from_res_odbc(name: &str, etc_dir: &Path, odbc_ini: Option<&Path>) -> Result<DbTarget> {
    let res_path = etc_dir.join("res_odbc.conf");
    let res = crate::conf::load(&res_path).map_err(|e| {
        Error::NotFound(format!(
            "voicemail.conf sets odbcstorage={name}, but {} cannot be read ({e}); give the database with --db URL",
            res_path.display()
        ))
    })?;
    let cat = res
        .categories
        .iter()
        .rev()
        .find(|c| !c.template && c.name == name)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "voicemail.conf sets odbcstorage={name}, but {} has no [{name}] section; give the database with --db URL",
                res_path.display()
            ))
        })?;
    let dsn = cat.get("dsn").ok_or_else(|| {
        Error::NotFound(format!(
            "[{name}] in {} has no dsn=; give the database with --db URL",
            res_path.display()
        ))
    })?;
    let ini_path = odbc_ini.map_or_else(default_odbc_ini, Path::to_path_buf);
    let ini = crate::conf::load(&ini_path).map_err(|e| {
        Error::NotFound(format!(
            "[{name}] in {} names the ODBC DSN {dsn}, but {} cannot be read ({e}); give the database with --db URL",
            res_path.display(),
            ini_path.display()
        ))
    })?;
    let sec = ini
        .categories
        .iter()
        .rev()
        .find(|c| c.name == dsn)
        .or_else(|| {
            ini.categories
                .iter()
                .rev()
                .find(|c| c.name.eq_ignore_ascii_case(dsn))
        })
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} has no [{dsn}] DSN (named by [{name}] in {}); give the database with --db URL",
                ini_path.display(),
                res_path.display()
            ))
        })?;
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| sec.get(k))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    let driver = get(&["driver"]).unwrap_or_default().to_ascii_lowercase();
    let kind = if driver.contains("psql") || driver.contains("postgres") {
        Kind::Postgres
    } else if ["maria", "mysql", "maodbc", "myodbc"]
        .iter()
        .any(|d| driver.contains(d))
    {
        Kind::Mysql
    } else {
        return Err(Error::Usage(format!(
            "[{dsn}] in {}: driver {driver:?} is neither PostgreSQL nor MariaDB/MySQL; give the database with --db URL",
            ini_path.display()
        )));
    };
    let port = match get(&["port"]) {
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            Error::Usage(format!("[{dsn}] in {}: bad Port {p:?}", ini_path.display()))
        })?),
        None => None,
    };
    // res_odbc's credentials win over the DSN's, as they do for Asterisk.
    let user = cat
        .get("username")
        .map(str::to_string)
        .filter(|v| !v.is_empty())
        .or_else(|| get(&["username", "user", "uid"]));
    let password = cat
        .get("password")
        .map(str::to_string)
        .filter(|v| !v.is_empty())
        .or_else(|| get(&["password", "pwd"]));
    // An encrypted DSN must not quietly become a plain-text connection.
    let tls = ["sslmode", "ssl_mode", "forcetls", "sslverify"]
        .iter()
        .find_map(|k| tls_demand(k, sec.get(k)?));
    Ok(DbTarget {
        tls,
        kind,
        host: get(&["servername", "server", "host"]).unwrap_or_else(|| "localhost".into()),
        port,
        user,
        password,
        database: get(&["database", "db"]),
        source: format!(
            "odbcstorage={name} → {} [{name}] → {} [{dsn}]",
            res_path.display(),
            ini_path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pbx_configuration_leads_to_the_server() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("res_odbc.conf"),
            "[asterisk]\nenabled => yes\ndsn => asterisk-connector\nusername => ast\npassword => s3cret\npre-connect => yes\n",
        )
        .unwrap();
        let ini = d.path().join("odbc.ini");
        std::fs::write(
            &ini,
            "[asterisk-connector]\nDescription = PostgreSQL connection to 'asterisk' database\nDriver = PostgreSQL Unicode\nDatabase = asterisk\nServername = db.example\nUserName = other\nPassword = other\nPort = 5433\nProtocol = 8.1\nReadOnly = No\n",
        )
        .unwrap();
        let vm = d.path().join("voicemail.conf");
        std::fs::write(
            &vm,
            "[general]\nformat=wav49|gsm\nodbcstorage=asterisk\nodbctable=voicemail_messages\n",
        )
        .unwrap();
        let vc = VoicemailConf::load(&vm, None).unwrap();
        let f = find(None, None, None, Some(&vc), d.path(), Some(&ini))
            .unwrap()
            .unwrap();
        assert_eq!(f.table, "voicemail_messages");
        assert_eq!(f.target.kind, Kind::Postgres);
        assert_eq!(f.target.host, "db.example");
        assert_eq!(f.target.port, Some(5433));
        assert_eq!(f.target.user.as_deref(), Some("ast"));
        assert_eq!(f.target.password.as_deref(), Some("s3cret"));
        assert_eq!(f.target.database.as_deref(), Some("asterisk"));
        assert!(!f.target.describe().contains("s3cret"));
        // --db wins; the table name still comes from voicemail.conf.
        let f = find(
            Some("mysql://root@127.0.0.1:3306/test"),
            None,
            None,
            Some(&vc),
            d.path(),
            Some(&ini),
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.target.kind, Kind::Mysql);
        assert_eq!(f.table, "voicemail_messages");
        assert_eq!(f.target.tls, None);
        // An encrypted DSN is remembered, so connecting refuses plain text.
        std::fs::write(
            &ini,
            "[asterisk-connector]\nDriver = PostgreSQL Unicode\nServername = db.example\nSSLmode = require\n",
        )
        .unwrap();
        let f = find(None, None, None, Some(&vc), d.path(), Some(&ini))
            .unwrap()
            .unwrap();
        assert_eq!(f.target.tls.as_deref(), Some("sslmode=require"));
        let e = crate::store::sql::db::Db::connect(&f.target).err().unwrap();
        assert!(
            e.to_string().contains("never falls back to plain text"),
            "{e}"
        );
        std::fs::write(
            &ini,
            "[asterisk-connector]\nDriver = MariaDB Unicode\nServer = db.example\nFORCETLS = 1\n",
        )
        .unwrap();
        let f = find(None, None, None, Some(&vc), d.path(), Some(&ini))
            .unwrap()
            .unwrap();
        assert_eq!(f.target.tls.as_deref(), Some("forcetls=1"));
        // A missing DSN is named.
        std::fs::write(&ini, "[other]\nDriver=MariaDB\n").unwrap();
        let e = find(None, None, None, Some(&vc), d.path(), Some(&ini)).unwrap_err();
        assert!(e.to_string().contains("[asterisk-connector]"), "{e}");
        // No ODBC configured, no URL: files.
        assert!(find(None, None, None, None, d.path(), None)
            .unwrap()
            .is_none());
    }
}
