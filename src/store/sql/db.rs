//! One connection to the voicemail table, PostgreSQL or MariaDB/MySQL, behind
//! one small API: statements are written once with `?` placeholders.

use crate::error::{Error, Result};

/// Which server dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mysql,
}

/// A statement parameter.
#[derive(Debug, Clone)]
pub enum V {
    Int(i32),
    Text(String),
    /// NULL (a text column, or with a cast in the statement).
    Null,
    Bytes(Vec<u8>),
}

impl From<&str> for V {
    fn from(s: &str) -> V {
        V::Text(s.to_string())
    }
}

impl From<String> for V {
    fn from(s: String) -> V {
        V::Text(s)
    }
}

impl From<i32> for V {
    fn from(n: i32) -> V {
        V::Int(n)
    }
}

impl From<Option<String>> for V {
    fn from(s: Option<String>) -> V {
        s.map_or(V::Null, V::Text)
    }
}

/// A result cell, as the server sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Bytes(Vec<u8>),
}

impl Cell {
    pub fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(n) => Some(n.to_string()),
            // Servers send text in the connection's charset; stray bytes are kept visible.
            Cell::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(n) => Some(*n),
            Cell::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            Cell::Null => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Cell::Bytes(b) => Some(b),
            Cell::Int(n) => Some(n.to_string().into_bytes()),
            Cell::Null => None,
        }
    }
}

/// A result cell borrowed from the driver's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawCell<'a> {
    Null,
    Int(i64),
    Bytes(&'a [u8]),
}

impl RawCell<'_> {
    /// The same cell, owned.
    pub fn to_cell(&self) -> Cell {
        match *self {
            RawCell::Null => Cell::Null,
            RawCell::Int(n) => Cell::Int(n),
            RawCell::Bytes(b) => Cell::Bytes(b.to_vec()),
        }
    }

    /// As `Cell::int`.
    pub fn int(&self) -> Option<i64> {
        match *self {
            RawCell::Int(n) => Some(n),
            RawCell::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            RawCell::Null => None,
        }
    }
}

enum Conn {
    Pg(Box<postgres::Client>),
    My(Box<mysql::Conn>),
}

/// Where to connect, without ever printing the password.
#[derive(Clone)]
pub struct DbTarget {
    pub kind: Kind,
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// The encryption the settings demand (`sslmode=require`, …), if any:
    /// this build connects in plain text only, so it refuses rather than
    /// silently going without.
    pub tls: Option<String>,
    /// Where these settings came from, for `-v` and errors.
    pub source: String,
}

/// Whether a TLS setting (URL parameter or odbc.ini key) demands
/// encryption: `Some(setting)` when it does. psqlODBC/libpq `sslmode`,
/// MySQL `ssl-mode`/`SSLMODE`, MariaDB Connector/ODBC `FORCETLS`/`SSLVERIFY`.
pub fn tls_demand(key: &str, value: &str) -> Option<String> {
    let k = key.to_ascii_lowercase().replace('-', "_");
    let v = value.trim().to_ascii_lowercase();
    let demands = match k.as_str() {
        "sslmode" | "ssl_mode" => !matches!(
            v.as_str(),
            "" | "disable" | "disabled" | "allow" | "prefer" | "preferred"
        ),
        "require_ssl" | "forcetls" | "sslverify" | "ssl" => {
            !matches!(v.as_str(), "" | "0" | "false" | "no" | "off")
        }
        _ => false,
    };
    demands.then(|| format!("{key}={value}"))
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DbTarget {
    /// `postgres://user:pass@host:port/db`, `mysql://…`, `mariadb://…`.
    pub fn parse_url(url: &str, source: &str) -> Result<DbTarget> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "database URL from {source}: {why} (expected postgres://USER@HOST[:PORT]/DB or mysql://USER[:PASSWORD]@HOST[:PORT]/DB)"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Kind::Postgres,
            "mysql" | "mariadb" => Kind::Mysql,
            _ => return Err(bad(&format!("unknown scheme {scheme:?}"))),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let mut tls = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let known = matches!(
                k.to_ascii_lowercase().replace('-', "_").as_str(),
                "sslmode" | "ssl_mode" | "require_ssl"
            );
            if !known {
                return Err(bad(&format!(
                    "unknown parameter {k:?} (the only one read is sslmode)"
                )));
            }
            tls = tls.or(tls_demand(k, &pct_decode(v)));
        }
        let (auth_host, db) = match rest.split_once('/') {
            Some((a, d)) => (a, Some(d)),
            None => (rest, None),
        };
        let (auth, hostport) = match auth_host.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, auth_host),
        };
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (Some(pct_decode(u)), Some(pct_decode(p))),
                None => (Some(pct_decode(a)), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            ),
            _ => (hostport.to_string(), None),
        };
        Ok(DbTarget {
            kind,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user: user.filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()),
            database: db.filter(|d| !d.is_empty()).map(pct_decode),
            tls,
            source: source.to_string(),
        })
    }

    /// The target as shown to the user: never the password.
    pub fn describe(&self) -> String {
        let scheme = match self.kind {
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
        };
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}{}@", if self.password.is_some() { ":***" } else { "" }))
            .unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{scheme}://{user}{}{port}/{}",
            self.host,
            self.database.as_deref().unwrap_or("")
        )
    }

    /// Replaces the password in a server or client message, should one echo it.
    pub fn redact(&self, msg: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => msg.replace(p.as_str(), "***"),
            _ => msg.to_string(),
        }
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An open connection.
pub struct Db {
    conn: Conn,
    pub target: DbTarget,
}

/// A database error with its retry class.
#[derive(Debug)]
pub struct DbError {
    pub msg: String,
    pub retry: bool,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

pub type DbResult<T> = std::result::Result<T, DbError>;

impl Db {
    pub fn connect(target: &DbTarget) -> Result<Db> {
        let fail = |e: String| {
            Error::Failed(format!(
                "cannot connect to {} ({}): {}",
                target.describe(),
                target.source,
                target.redact(&e)
            ))
        };
        if let Some(setting) = &target.tls {
            return Err(Error::Usage(format!(
                "{} ({}) asks for an encrypted connection ({setting}), which this vmtool does not make: it never falls back to plain text. Reach the server over its local socket, a trusted network or an SSH tunnel (ssh -L PORT:localhost:PORT dbhost) and drop that setting",
                target.describe(),
                target.source
            )));
        }
        let conn = match target.kind {
            Kind::Postgres => Conn::Pg(Box::new(
                postgres::Config::from(pg_config(target))
                    .connect(postgres::NoTls)
                    .map_err(|e| fail(pg_message(&e)))?,
            )),
            Kind::Mysql => {
                let opts = mysql::OptsBuilder::new()
                    .ip_or_hostname(Some(target.host.clone()))
                    .tcp_port(target.port.unwrap_or(3306))
                    .user(target.user.clone())
                    .pass(target.password.clone())
                    .db_name(target.database.clone())
                    .tcp_connect_timeout(Some(std::time::Duration::from_secs(10)))
                    .prefer_socket(false);
                let mut conn = mysql::Conn::new(opts).map_err(|e| fail(e.to_string()))?;
                // Locking reads see the newest committed row; plain reads need the same.
                mysql::prelude::Queryable::query_drop(
                    &mut conn,
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                )
                .map_err(|e| fail(e.to_string()))?;
                // Galera: reads wait until this node has applied what other
                // nodes committed (another server's move is seen at once).
                // MySQL without wsrep has no such variable: nothing to wait for.
                let _ = mysql::prelude::Queryable::query_drop(
                    &mut conn,
                    "SET SESSION wsrep_sync_wait = 1",
                );
                Conn::My(Box::new(conn))
            }
        };
        Ok(Db {
            conn,
            target: target.clone(),
        })
    }

    pub fn kind(&self) -> Kind {
        match self.conn {
            Conn::Pg(_) => Kind::Postgres,
            Conn::My(_) => Kind::Mysql,
        }
    }

    /// Rewrites `?` placeholders for PostgreSQL (`$1`, `$2`, …).
    fn sql(&self, sql: &str) -> String {
        match self.conn {
            Conn::My(_) => sql.to_string(),
            Conn::Pg(_) => {
                let mut out = String::with_capacity(sql.len() + 8);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// Runs a query; `each` sees every row as it arrives (not buffered by vmtool).
    pub fn query_each(
        &mut self,
        sql: &str,
        params: &[V],
        each: &mut dyn FnMut(Vec<Cell>),
    ) -> DbResult<()> {
        self.query_each_raw(sql, params, &mut |cells| {
            each(cells.iter().map(RawCell::to_cell).collect());
            true
        })
    }

    /// Like `query_each`, but the cells borrow the driver's row buffer (no
    /// copy per cell); `each` returns false to stop reading.
    pub fn query_each_raw(
        &mut self,
        sql: &str,
        params: &[V],
        each: &mut dyn FnMut(&[RawCell<'_>]) -> bool,
    ) -> DbResult<()> {
        let sql = self.sql(sql);
        match &mut self.conn {
            Conn::Pg(c) => {
                use postgres::fallible_iterator::FallibleIterator;
                let p = pg_params(params);
                let mut it = c
                    .query_raw(sql.as_str(), p.iter().map(|b| b.as_ref()))
                    .map_err(pg_err)?;
                while let Some(row) = it.next().map_err(pg_err)? {
                    let cells: Vec<RawCell<'_>> =
                        (0..row.len()).map(|i| pg_cell(&row, i)).collect();
                    if !each(&cells) {
                        break;
                    }
                }
                Ok(())
            }
            Conn::My(c) => {
                use mysql::prelude::Queryable;
                let p = my_params(params);
                let result = c.exec_iter(sql.as_str(), p).map_err(my_err)?;
                for row in result {
                    let row = row.map_err(my_err)?;
                    let mut other = Vec::new();
                    let mut cells = Vec::with_capacity(row.len());
                    for i in 0..row.len() {
                        cells.push(match row.as_ref(i) {
                            None | Some(mysql::Value::NULL) => RawCell::Null,
                            Some(mysql::Value::Int(n)) => RawCell::Int(*n),
                            Some(mysql::Value::UInt(n)) => RawCell::Int(*n as i64),
                            Some(mysql::Value::Bytes(b)) => RawCell::Bytes(b),
                            Some(v) => {
                                other.push((i, v.as_sql(true).into_bytes()));
                                RawCell::Null
                            }
                        });
                    }
                    for (i, b) in &other {
                        cells[*i] = RawCell::Bytes(b);
                    }
                    if !each(&cells) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// PostgreSQL: the types of the columns `sql` returns (`None` on MySQL).
    pub(super) fn pg_column_types(
        &mut self,
        sql: &str,
    ) -> DbResult<Option<Vec<postgres::types::Type>>> {
        let sql = self.sql(sql);
        match &mut self.conn {
            Conn::Pg(c) => {
                let st = c.prepare(&sql).map_err(pg_err)?;
                Ok(Some(
                    st.columns().iter().map(|c| c.type_().clone()).collect(),
                ))
            }
            Conn::My(_) => Ok(None),
        }
    }

    /// PostgreSQL: runs a `COPY … TO STDOUT`; `each` sees its data in
    /// pieces as they arrive and returns false to stop reading.
    pub(super) fn copy_out_each(
        &mut self,
        sql: &str,
        each: &mut dyn FnMut(&[u8]) -> bool,
    ) -> DbResult<()> {
        use std::io::BufRead;
        let Conn::Pg(c) = &mut self.conn else {
            return Err(DbError {
                msg: "COPY is PostgreSQL's".into(),
                retry: false,
            });
        };
        let mut r = c.copy_out(sql).map_err(pg_err)?;
        let io = |e: std::io::Error| DbError {
            msg: e.to_string(),
            retry: false,
        };
        loop {
            let piece = r.fill_buf().map_err(io)?;
            let n = piece.len();
            if n == 0 || !each(piece) {
                return Ok(());
            }
            r.consume(n);
        }
    }

    pub fn query(&mut self, sql: &str, params: &[V]) -> DbResult<Vec<Vec<Cell>>> {
        let mut rows = Vec::new();
        self.query_each(sql, params, &mut |r| rows.push(r))?;
        Ok(rows)
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn exec(&mut self, sql: &str, params: &[V]) -> DbResult<u64> {
        let sql = self.sql(sql);
        match &mut self.conn {
            Conn::Pg(c) => {
                let p = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    p.iter().map(|b| b.as_ref()).collect();
                c.execute(sql.as_str(), &refs).map_err(pg_err)
            }
            Conn::My(c) => {
                use mysql::prelude::Queryable;
                c.exec_drop(sql.as_str(), my_params(params))
                    .map_err(my_err)?;
                Ok(c.affected_rows())
            }
        }
    }

    /// A statement without parameters (transaction control).
    pub fn batch(&mut self, sql: &str) -> DbResult<()> {
        match &mut self.conn {
            Conn::Pg(c) => c.batch_execute(sql).map_err(pg_err),
            Conn::My(c) => {
                use mysql::prelude::Queryable;
                c.query_drop(sql).map_err(my_err)
            }
        }
    }

    pub fn begin(&mut self) -> DbResult<()> {
        self.batch(match self.kind() {
            Kind::Postgres => "BEGIN",
            Kind::Mysql => "START TRANSACTION",
        })
    }

    pub fn commit(&mut self) -> DbResult<()> {
        self.batch("COMMIT")
    }

    /// Ends a failed transaction; a broken connection is reported by the next statement.
    pub fn rollback(&mut self) {
        let _ = self.batch("ROLLBACK");
    }

    /// Runs `work` in one transaction, retried when the server reports a
    /// deadlock, a serialization failure or a duplicate key (a concurrent
    /// allocation of the same number): the loser simply allocates again.
    pub fn transaction<T>(&mut self, mut work: impl FnMut(&mut Db) -> DbResult<T>) -> DbResult<T> {
        let mut delay = 2u64;
        for attempt in 0.. {
            self.begin()?;
            match work(self).and_then(|t| self.commit().map(|()| t)) {
                Ok(t) => return Ok(t),
                Err(e) => {
                    self.rollback();
                    if !e.retry || attempt >= 50 {
                        return Err(e);
                    }
                    // Jitter keeps two retrying servers from meeting again.
                    let jitter = u64::from(std::process::id() % 7) + attempt % 5;
                    std::thread::sleep(std::time::Duration::from_millis(delay + jitter));
                    delay = (delay * 2).min(200);
                }
            }
        }
        unreachable!("the retry loop returns")
    }
}

/// The connection settings of a PostgreSQL target.
pub(super) fn pg_config(target: &DbTarget) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(&target.host);
    if let Some(p) = target.port {
        c.port(p);
    }
    c.user(target.user.as_deref().unwrap_or("postgres"));
    if let Some(p) = &target.password {
        c.password(p);
    }
    if let Some(d) = &target.database {
        c.dbname(d);
    }
    c.application_name("vmtool");
    c.connect_timeout(std::time::Duration::from_secs(10));
    c
}

pub(super) fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        }
    }
}

fn pg_err(e: postgres::Error) -> DbError {
    use postgres::error::SqlState;
    let retry = e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::LOCK_NOT_AVAILABLE
    });
    DbError {
        msg: pg_message(&e),
        retry,
    }
}

fn my_err(e: mysql::Error) -> DbError {
    // 1213 deadlock, 1205 lock wait timeout, 1062 duplicate key, 1020 record changed.
    let retry =
        matches!(&e, mysql::Error::MySqlError(m) if matches!(m.code, 1213 | 1205 | 1062 | 1020));
    DbError {
        msg: e.to_string(),
        retry,
    }
}

fn pg_params(params: &[V]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                V::Int(n) => Box::new(*n),
                V::Text(s) => Box::new(s.clone()),
                V::Null => Box::new(PgNull),
                V::Bytes(b) => Box::new(b.clone()),
            }
        })
        .collect()
}

/// NULL for a parameter of any type.
#[derive(Debug)]
struct PgNull;

impl postgres::types::ToSql for PgNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// One column of a PostgreSQL row, borrowed: integers and booleans as
/// numbers, everything else as its bytes (text as UTF-8).
fn pg_cell(row: &postgres::Row, i: usize) -> RawCell<'_> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_();
    let get = |r: Result<Option<i64>, postgres::Error>| r.ok().flatten().map(RawCell::Int);
    let cell = if *ty == Type::INT4 {
        get(row.try_get::<_, Option<i32>>(i).map(|n| n.map(i64::from)))
    } else if *ty == Type::INT8 {
        get(row.try_get::<_, Option<i64>>(i))
    } else if *ty == Type::INT2 {
        get(row.try_get::<_, Option<i16>>(i).map(|n| n.map(i64::from)))
    } else if *ty == Type::BOOL {
        get(row.try_get::<_, Option<bool>>(i).map(|b| b.map(i64::from)))
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<&[u8]>>(i)
            .ok()
            .flatten()
            .map(RawCell::Bytes)
    } else {
        row.try_get::<_, Option<&str>>(i)
            .ok()
            .flatten()
            .map(|s| RawCell::Bytes(s.as_bytes()))
    };
    cell.unwrap_or(RawCell::Null)
}

fn my_params(params: &[V]) -> mysql::Params {
    if params.is_empty() {
        return mysql::Params::Empty;
    }
    mysql::Params::Positional(
        params
            .iter()
            .map(|v| match v {
                V::Int(n) => mysql::Value::Int((*n).into()),
                V::Text(s) => mysql::Value::Bytes(s.clone().into_bytes()),
                V::Null => mysql::Value::NULL,
                V::Bytes(b) => mysql::Value::Bytes(b.clone()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let t = DbTarget::parse_url("postgres://ast:s%40cret@db1:5433/voicemail", "--db").unwrap();
        assert_eq!(t.kind, Kind::Postgres);
        assert_eq!(t.host, "db1");
        assert_eq!(t.port, Some(5433));
        assert_eq!(t.user.as_deref(), Some("ast"));
        assert_eq!(t.password.as_deref(), Some("s@cret"));
        assert_eq!(t.database.as_deref(), Some("voicemail"));
        assert!(!t.describe().contains("cret"));
        assert!(!format!("{t:?}").contains("cret"));
        assert_eq!(t.redact("auth failed for s@cret"), "auth failed for ***");
        let m = DbTarget::parse_url("mariadb://root@127.0.0.1/test", "x").unwrap();
        assert_eq!(m.kind, Kind::Mysql);
        assert_eq!(m.port, None);
        // TLS demanded: remembered (and refused at connect); not demanded: fine.
        let t = DbTarget::parse_url("postgres://u@h/d?sslmode=verify-full", "x").unwrap();
        assert_eq!(t.tls.as_deref(), Some("sslmode=verify-full"));
        assert_eq!(t.database.as_deref(), Some("d"));
        let t = DbTarget::parse_url("mysql://u@h/d?ssl-mode=REQUIRED", "x").unwrap();
        assert_eq!(t.tls.as_deref(), Some("ssl-mode=REQUIRED"));
        let t = DbTarget::parse_url("postgres://u@h/d?sslmode=disable", "x").unwrap();
        assert_eq!(t.tls, None);
        let t = DbTarget::parse_url("postgres://u@h?sslmode=prefer", "x").unwrap();
        assert_eq!((t.tls, t.host.as_str()), (None, "h"));
        assert!(DbTarget::parse_url("postgres://u@h/d?options=x", "x").is_err());
        assert!(DbTarget::parse_url("sqlite:///x", "x").is_err());
        assert!(DbTarget::parse_url("db1/test", "x").is_err());
    }
}
