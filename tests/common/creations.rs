//! Tables of Sysmon process creations (EventCode 1) made by the tests: a
//! few listed rows, or one chain of any depth.
//!
//! Why one builder: lineage, integrity, cell bounds and Sigma tests all need
//! creations in splunkd's form, differing only in which parent columns are
//! sent and how an unknown root parent is written; the options here are
//! exactly those differences, so each test still sends what it always sent.

use super::datasets::{Table, Value};

/// The parent GUID Sysmon writes when it did not see the parent start.
pub const ZERO: &str = "{00000000-0000-0000-0000-000000000000}";

/// The columns every creation has, in the order splunkd's tests send them.
pub const COLUMNS: [&str; 6] = [
    "_time",
    "EventCode",
    "ProcessGuid",
    "ParentProcessGuid",
    "Image",
    "CommandLine",
];

/// The GUID of process `n` in a [`Creations::chain`].
pub fn chain_guid(n: u64) -> String {
    format!("{{747F3D96-0000-5D31-0000-{n:012X}}}")
}

/// Which parent columns follow `CommandLine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentColumns {
    /// None: lineage has only the GUIDs to go on.
    None,
    /// `ParentImage` only, always empty (as some forwarders send it).
    BlankImage,
    /// `ParentImage` and `ParentCommandLine`, from the parent's own row.
    Both,
}

struct Creation {
    time: u64,
    guid: String,
    parent: String,
    image: String,
    command_line: String,
    parent_image: String,
    parent_command_line: String,
}

/// A table of creations; [`Creations::table`] makes it.
pub struct Creations {
    name: String,
    rows: Vec<Creation>,
    parents: ParentColumns,
    computer: Option<String>,
}

impl Creations {
    /// Rows of (guid, parent guid, image, command line), in that order, at
    /// `_time` 1,600,000,000 + their index; no parent columns.
    pub fn listed(name: &str, rows: &[(&str, &str, &str, &str)]) -> Creations {
        let rows = rows
            .iter()
            .zip(1_600_000_000..)
            .map(|(&(guid, parent, image, command_line), time)| Creation {
                time,
                guid: guid.into(),
                parent: parent.into(),
                image: image.into(),
                command_line: command_line.into(),
                parent_image: String::new(),
                parent_command_line: String::new(),
            })
            .collect();
        Creations {
            name: name.into(),
            rows,
            parents: ParentColumns::None,
            computer: None,
        }
    }

    /// One chain named "chain of N": process k (1..=n, GUID
    /// [`chain_guid`]`(k)`, `_time` 1,700,000,000 + k) started by k-1,
    /// process 1 by [`ZERO`]; newest (deepest) first, as splunkd sends them;
    /// both parent columns, empty for process 1.
    pub fn chain(
        n: u64,
        image: impl Fn(u64) -> String,
        command_line: impl Fn(u64) -> String,
    ) -> Creations {
        let rows = (1..=n)
            .rev()
            .map(|k| {
                let (parent, parent_image, parent_command_line) = if k == 1 {
                    (ZERO.to_string(), String::new(), String::new())
                } else {
                    (chain_guid(k - 1), image(k - 1), command_line(k - 1))
                };
                Creation {
                    time: 1_700_000_000 + k,
                    guid: chain_guid(k),
                    parent,
                    image: image(k),
                    command_line: command_line(k),
                    parent_image,
                    parent_command_line,
                }
            })
            .collect();
        Creations {
            name: format!("chain of {n}"),
            rows,
            parents: ParentColumns::Both,
            computer: None,
        }
    }

    /// Which parent columns to send.
    pub fn parent_columns(mut self, parents: ParentColumns) -> Creations {
        self.parents = parents;
        self
    }

    /// Write the parent image and command line of processes whose parent is
    /// [`ZERO`] as `mark` (Sysmon writes `-`).
    pub fn unknown_parent_as(mut self, mark: &str) -> Creations {
        for r in self.rows.iter_mut().filter(|r| r.parent == ZERO) {
            r.parent_image = mark.into();
            r.parent_command_line = mark.into();
        }
        self
    }

    /// Add a `Computer` column with this value in every row.
    pub fn computer(mut self, name: &str) -> Creations {
        self.computer = Some(name.into());
        self
    }

    pub fn table(self) -> Table {
        let mut columns = COLUMNS.to_vec();
        match self.parents {
            ParentColumns::None => {}
            ParentColumns::BlankImage => columns.push("ParentImage"),
            ParentColumns::Both => columns.extend(["ParentImage", "ParentCommandLine"]),
        }
        if self.computer.is_some() {
            columns.push("Computer");
        }
        let (parents, computer) = (self.parents, self.computer);
        let rows = self
            .rows
            .into_iter()
            .map(|c| {
                let mut row = vec![
                    c.time.to_string(),
                    "1".into(),
                    c.guid,
                    c.parent,
                    c.image,
                    c.command_line,
                ];
                match parents {
                    ParentColumns::None => {}
                    ParentColumns::BlankImage => row.push(String::new()),
                    ParentColumns::Both => {
                        row.extend([c.parent_image, c.parent_command_line]);
                    }
                }
                row.extend(computer.clone());
                row.into_iter().map(Value::one).collect()
            })
            .collect();
        Table {
            name: self.name,
            columns: columns.into_iter().map(String::from).collect(),
            rows,
        }
    }
}
