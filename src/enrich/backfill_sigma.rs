//! Sigma on the ancestors backfill finds: each export result is matched as
//! it arrives, so `lineage_sigma` names what an ancestor's creation matched
//! wherever that ancestor came from, and the matches reach the process
//! table with it. The backfill search must then also ask for every field
//! the rules read; this module says which.

use super::backfill::text;
use crate::sigma::{Fields, RuleId, RuleSet, Scratch};
use crate::sysmon::ProcessGuid;
use std::sync::Arc;

/// The search's rules, applied to each creation backfill finds.
pub(super) struct SigmaOnFound {
    rules: Arc<RuleSet>,
    scratch: Scratch,
    /// ` EventCode OriginalFileName …`: the rules' fields beyond the
    /// backfill search's own.
    extra_fields: String,
    /// What each found creation matched (only those that matched).
    found: Vec<(ProcessGuid, Vec<RuleId>)>,
}

impl SigmaOnFound {
    /// The hook for `rules`, given the space-separated fields the backfill
    /// search already asks for.
    pub(super) fn new(rules: Arc<RuleSet>, base_fields: &str) -> SigmaOnFound {
        let base: Vec<&str> = base_fields.split(' ').collect();
        let mut extra = String::new();
        for name in
            std::iter::once("EventCode").chain(rules.field_names().iter().map(String::as_str))
        {
            // Names SPL takes bare; a rule on another name cannot match a
            // backfilled creation (its value would be absent) but loses
            // nothing else.
            let bare = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if bare && !base.contains(&name) && !extra.split(' ').any(|e| e == name) {
                extra.push(' ');
                extra.push_str(name);
            }
        }
        SigmaOnFound {
            rules,
            scratch: Scratch::default(),
            extra_fields: extra,
            found: Vec::new(),
        }
    }

    /// ` EventCode …`: what to append to the search's `| fields` list.
    pub(super) fn extra_fields(&self) -> &str {
        &self.extra_fields
    }

    /// Matches one export result, the creation of `guid`.
    pub(super) fn evaluate(
        &mut self,
        row: &serde_json::Map<String, serde_json::Value>,
        guid: ProcessGuid,
    ) {
        let mut ids = Vec::new();
        self.rules
            .matches_with(&JsonRow(row), &mut self.scratch, &mut ids);
        if !ids.is_empty() {
            self.found.push((guid, ids));
        }
    }

    /// The matches found since the last call.
    pub(super) fn take(&mut self) -> Vec<(ProcessGuid, Vec<RuleId>)> {
        std::mem::take(&mut self.found)
    }
}

/// One export result as the Sigma engine sees it.
struct JsonRow<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl Fields for JsonRow<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|_| text(self.0, name))
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, _)| text(self.0, k))
            .filter(|v| !v.is_empty())
    }
}
