//! Circuits (services found unreachable, with their cool-down) and facts
//! (small values learnt from splunkd, kept until they expire): a few rows
//! each, read once per search.

use rusqlite::{params, OptionalExtension};

use super::{Result, StateStore};
use crate::circuit::{CircuitLedger, CircuitRecord};

impl StateStore {
    /// The circuit of `name`, if one is recorded.
    pub fn circuit(&self, name: &str) -> Result<Option<CircuitRecord>> {
        self.read("reading a circuit", |conn| {
            conn.prepare_cached(
                "SELECT name, open_until, cooldown, cause, updated_at FROM circuits WHERE name = ?1",
            )?
            .query_row([name], record)
            .optional()
        })
    }

    /// Every recorded circuit, by name.
    pub fn circuits(&self) -> Result<Vec<CircuitRecord>> {
        self.read("reading the circuits", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, open_until, cooldown, cause, updated_at FROM circuits ORDER BY name",
            )?;
            let rows = stmt.query_map([], record)?;
            rows.collect()
        })
    }

    /// Writes (replaces) a circuit.
    pub fn circuit_put(&self, r: &CircuitRecord) -> Result<()> {
        self.write("recording a circuit", |tx| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO circuits (name, open_until, cooldown, cause, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                r.name,
                r.open_until,
                r.cooldown,
                r.cause,
                r.updated_at
            ])
        })
        .map(drop)
    }

    /// Forgets a circuit.
    pub fn circuit_clear(&self, name: &str) -> Result<()> {
        self.write("clearing a circuit", |tx| {
            tx.prepare_cached("DELETE FROM circuits WHERE name = ?1")?
                .execute([name])
        })
        .map(drop)
    }

    /// A fact that has not expired at `now` (epoch seconds).
    pub fn fact(&self, name: &str, now: i64) -> Result<Option<String>> {
        self.read("reading a fact", |conn| {
            conn.prepare_cached("SELECT value FROM facts WHERE name = ?1 AND expires_at > ?2")?
                .query_row(params![name, now], |r| r.get(0))
                .optional()
        })
    }

    /// Keeps a fact until `expires_at` (epoch seconds).
    pub fn fact_put(&self, name: &str, value: &str, expires_at: i64) -> Result<()> {
        self.write("recording a fact", |tx| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO facts (name, value, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, value, expires_at])
        })
        .map(drop)
    }
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<CircuitRecord> {
    Ok(CircuitRecord {
        name: r.get(0)?,
        open_until: r.get(1)?,
        cooldown: r.get(2)?,
        cause: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

impl CircuitLedger for StateStore {
    fn circuit_get(&self, name: &str) -> std::result::Result<Option<CircuitRecord>, String> {
        self.circuit(name).map_err(|e| e.to_string())
    }

    fn circuit_put(&self, record: &CircuitRecord) -> std::result::Result<(), String> {
        StateStore::circuit_put(self, record).map_err(|e| e.to_string())
    }

    fn circuit_clear(&self, name: &str) -> std::result::Result<(), String> {
        StateStore::circuit_clear(self, name).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuits_and_facts_round_trip() {
        let s = StateStore::open_in_memory().unwrap();
        assert_eq!(s.circuit("hashlookup").unwrap(), None);
        let r = CircuitRecord {
            name: "hashlookup".into(),
            open_until: 160,
            cooldown: 60,
            cause: "connection failed: dns error".into(),
            updated_at: 100,
        };
        StateStore::circuit_put(&s, &r).unwrap();
        assert_eq!(s.circuit("hashlookup").unwrap(), Some(r.clone()));
        assert_eq!(s.circuits().unwrap(), [r]);
        StateStore::circuit_clear(&s, "hashlookup").unwrap();
        assert!(s.circuits().unwrap().is_empty());
        s.fact_put("shc_members", "3", 200).unwrap();
        assert_eq!(s.fact("shc_members", 199).unwrap().as_deref(), Some("3"));
        assert_eq!(s.fact("shc_members", 200).unwrap(), None);
    }
}
