//! The capabilities this dashboard holds: one per kind, saved in `<var>/dashboard.json` as
//! `{"notes": {"token": "gs_…", "label", "connected", "origin"?}, …}`, replaced atomically.

use granary_app_kit::json::Json;
use granary_app_kit::store;
use std::path::PathBuf;
use std::sync::Mutex;

/// What a connection reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Notes grain's API (`HttpApi{apiName: "notes"}`).
    Notes,
    /// An outside HTTP origin (`HttpApi{origin}`).
    Http,
    /// Sending mail (`MailSender`).
    Mail,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Notes, Kind::Http, Kind::Mail];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Notes => "notes",
            Kind::Http => "http",
            Kind::Mail => "mail",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// The SturdyRef token (`gs_…`): a secret, never sent to the page.
    pub token: String,
    pub label: String,
    /// RFC 3339 UTC.
    pub connected: String,
    /// The origin, for [`Kind::Http`].
    pub origin: Option<String>,
}

impl Connection {
    /// What the page may see: the token shortened to its first characters.
    pub fn public_json(&self) -> Json {
        let short: String = self.token.chars().take(7).collect();
        let mut m = vec![
            ("label", Json::from(self.label.as_str())),
            ("connected", Json::from(self.connected.as_str())),
            ("token", Json::from(format!("{short}…"))),
        ];
        if let Some(o) = &self.origin {
            m.push(("origin", Json::from(o.as_str())));
        }
        Json::obj(m)
    }
}

pub struct Connections {
    file: PathBuf,
    lock: Mutex<()>,
}

impl Connections {
    pub fn new(var: PathBuf) -> Connections {
        Connections { file: var.join("dashboard.json"), lock: Mutex::new(()) }
    }

    fn read(&self) -> Result<Vec<(Kind, Connection)>, String> {
        let Some(doc) = store::load(&self.file)? else { return Ok(Vec::new()) };
        let Json::Obj(members) = doc else {
            return Err(format!("{} is not a JSON object; fix or delete it", self.file.display()));
        };
        let mut out = Vec::new();
        for (k, v) in members {
            let (Some(kind), Some(token), Some(label)) = (Kind::parse(&k), v.str_field("token"), v.str_field("label")) else {
                return Err(format!("{} has an entry `{k}` that is not a connection; fix or delete it", self.file.display()));
            };
            out.push((kind, Connection {
                token: token.to_owned(),
                label: label.to_owned(),
                connected: v.str_field("connected").unwrap_or("").to_owned(),
                origin: v.str_field("origin").map(str::to_owned),
            }));
        }
        Ok(out)
    }

    fn write(&self, all: &[(Kind, Connection)]) -> Result<(), String> {
        let doc = Json::Obj(
            all.iter()
                .map(|(k, c)| {
                    let mut m = vec![
                        ("token", Json::from(c.token.as_str())),
                        ("label", Json::from(c.label.as_str())),
                        ("connected", Json::from(c.connected.as_str())),
                    ];
                    if let Some(o) = &c.origin {
                        m.push(("origin", Json::from(o.as_str())));
                    }
                    (k.name().to_owned(), Json::obj(m))
                })
                .collect(),
        );
        store::save(&self.file, &doc)
    }

    pub fn all(&self) -> Result<Vec<(Kind, Connection)>, String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    pub fn get(&self, kind: Kind) -> Result<Option<Connection>, String> {
        Ok(self.all()?.into_iter().find(|(k, _)| *k == kind).map(|(_, c)| c))
    }

    /// Saves `c` as the connection of `kind`, returning the one it replaces.
    pub fn set(&self, kind: Kind, c: Connection) -> Result<Option<Connection>, String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.read()?;
        let old = all.iter().position(|(k, _)| *k == kind).map(|i| all.remove(i).1);
        all.push((kind, c));
        self.write(&all)?;
        Ok(old)
    }

    /// Removes the connection of `kind`, returning it.
    pub fn remove(&self, kind: Kind) -> Result<Option<Connection>, String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.read()?;
        let old = all.iter().position(|(k, _)| *k == kind).map(|i| all.remove(i).1);
        if old.is_some() {
            self.write(&all)?;
        }
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(token: &str, origin: Option<&str>) -> Connection {
        Connection { token: token.into(), label: "L".into(), connected: "2026-01-01T00:00:00Z".into(), origin: origin.map(Into::into) }
    }

    #[test]
    fn connections_are_saved_replaced_removed_and_kept_across_restarts() {
        let var = std::env::temp_dir().join(format!("dashboard-conn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&var);
        std::fs::create_dir_all(&var).unwrap();
        let c = Connections::new(var.clone());
        assert_eq!(c.get(Kind::Notes).unwrap(), None);
        assert_eq!(c.set(Kind::Notes, conn("gs_one", None)).unwrap(), None);
        c.set(Kind::Http, conn("gs_web", Some("http://api.test:1"))).unwrap();
        assert_eq!(c.set(Kind::Notes, conn("gs_two", None)).unwrap(), Some(conn("gs_one", None)));
        let again = Connections::new(var.clone());
        assert_eq!(again.get(Kind::Notes).unwrap(), Some(conn("gs_two", None)));
        assert_eq!(again.get(Kind::Http).unwrap(), Some(conn("gs_web", Some("http://api.test:1"))));
        assert_eq!(again.remove(Kind::Http).unwrap().map(|c| c.token), Some("gs_web".into()));
        assert_eq!(again.remove(Kind::Http).unwrap(), None);
        assert_eq!(Connections::new(var.clone()).all().unwrap().len(), 1);
        std::fs::write(var.join("dashboard.json"), r#"{"printer": {"token": "x"}}"#).unwrap();
        assert!(again.all().unwrap_err().contains("`printer`"));
        std::fs::remove_dir_all(var).unwrap();
    }

    #[test]
    fn the_page_sees_a_shortened_token() {
        let j = conn("gs_abcdefghijklmnop", Some("http://o")).public_json();
        assert_eq!(j.str_field("token"), Some("gs_abcd…"));
        assert_eq!(j.str_field("origin"), Some("http://o"));
        assert!(!j.to_string().contains("efgh"));
    }
}
